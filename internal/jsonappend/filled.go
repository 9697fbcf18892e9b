package jsonappend

import (
	"reflect"
	"strconv"
)

// Filled sets every exported field of the struct *v, embedded structs' included,
// to a value that no omitempty leaves out: strings (with characters that need
// escaping), integers, booleans, slices of two strings, pointers to filled
// values. A shape's test compares its AppendJSON with encoding/json's on it, so
// that a field added later to the struct but not to AppendJSON fails the test.
func Filled(v any) {
	fill(reflect.ValueOf(v).Elem(), new(int))
}

func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	case reflect.String:
		v.SetString("v" + strconv.Itoa(*n) + ` <&>"\`)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(*n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		fill(s.Index(0), n)
		fill(s.Index(1), n)
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), n)
		v.Set(p)
	}
}
