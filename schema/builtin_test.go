package schema

// testTypes is a slice of pg_type for pure tests.
var testTypes = TypeMap{
	16:    {OID: 16, Name: "bool", Kind: 'b', Category: 'B', Delim: ','},
	17:    {OID: 17, Name: "bytea", Kind: 'b', Category: 'U', Delim: ','},
	20:    {OID: 20, Name: "int8", Kind: 'b', Category: 'N', Delim: ','},
	21:    {OID: 21, Name: "int2", Kind: 'b', Category: 'N', Delim: ','},
	23:    {OID: 23, Name: "int4", Kind: 'b', Category: 'N', Delim: ','},
	25:    {OID: 25, Name: "text", Kind: 'b', Category: 'S', Delim: ','},
	114:   {OID: 114, Name: "json", Kind: 'b', Category: 'U', Delim: ','},
	700:   {OID: 700, Name: "float4", Kind: 'b', Category: 'N', Delim: ','},
	701:   {OID: 701, Name: "float8", Kind: 'b', Category: 'N', Delim: ','},
	1007:  {OID: 1007, Name: "_int4", Kind: 'b', Category: 'A', Elem: 23, Delim: ','},
	1009:  {OID: 1009, Name: "_text", Kind: 'b', Category: 'A', Elem: 25, Delim: ','},
	1114:  {OID: 1114, Name: "timestamp", Kind: 'b', Category: 'D', Delim: ','},
	1184:  {OID: 1184, Name: "timestamptz", Kind: 'b', Category: 'D', Delim: ','},
	1700:  {OID: 1700, Name: "numeric", Kind: 'b', Category: 'N', Delim: ','},
	1231:  {OID: 1231, Name: "_numeric", Kind: 'b', Category: 'A', Elem: 1700, Delim: ','},
	3802:  {OID: 3802, Name: "jsonb", Kind: 'b', Category: 'U', Delim: ','},
	1020:  {OID: 1020, Name: "_box", Kind: 'b', Category: 'A', Elem: 603, Delim: ';'},
	603:   {OID: 603, Name: "box", Kind: 'b', Category: 'G', Delim: ';'},
	90001: {OID: 90001, Name: "posint", Kind: 'd', Category: 'N', Base: 23, Delim: ','},
	90002: {OID: 90002, Name: "mood", Kind: 'e', Category: 'E', Delim: ','},
}
