package openapi

import "encoding/json"

// DocumentFormats returns the formats the contract's document uses, as
// Parse's check finds them.
func DocumentFormats(c *Contract) ([]string, error) {
	data, err := c.doc.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var tree any
	if err := json.Unmarshal(data, &tree); err != nil {
		return nil, err
	}
	return usedFormats(tree), nil
}
