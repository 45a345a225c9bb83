package sheen

import (
	"reflect"
	"testing"
	"time"
)

// scribble overwrites every part of v a caller can reach: each exported
// field, each element of a slice, each entry of a map, what a pointer
// points to. A kind it does not know fails the test, so that a field added
// to a value the SDK hands out (Balance, DownloadLink) cannot be left out
// of the tests that check the caller owns it.
func scribble(t *testing.T, v reflect.Value) {
	t.Helper()
	if !v.CanSet() {
		t.Fatalf("scribble cannot set %s", v.Type())
	}
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				scribble(t, v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			scribble(t, v.Index(i))
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(it.Value())
			scribble(t, e)
			v.SetMapIndex(it.Key(), e)
		}
	case reflect.Pointer:
		if !v.IsNil() {
			scribble(t, v.Elem())
		}
	case reflect.String:
		v.SetString("scribbled " + v.String())
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(-v.Int() - 7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(-v.Float() - 7)
	default:
		t.Fatalf("scribble does not know %s", v.Type())
	}
}
