package queryapi

// JSONValue is a value read from a ClickHouse server (typ is its column's
// type) as JSONEachRow writes it: what the JSON answers of the API show
// for results read as rows, the same as the embedded engine's JSON.
func JSONValue(v any, typ string) any { return jsonValue(v, typ) }
