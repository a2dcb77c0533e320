-- One table holding every family of built-in PostgreSQL type scoop maps.
-- {{table}} is replaced by the test's table name.
DO $$ BEGIN
  CREATE TYPE fixture_mood AS ENUM ('sad', 'ok', 'happy');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE DOMAIN fixture_posint AS int4 CHECK (VALUE > 0);
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE TABLE {{table}} (
  id           int8 PRIMARY KEY,
  c_bool       bool,
  c_int2       int2,
  c_int4       int4,
  c_int8       int8,
  c_float4     float4,
  c_float8     float8,
  c_float_nan  float8,
  c_numeric    numeric(30,10),
  c_numeric_big numeric,
  c_money      money,
  c_text       text,
  c_varchar    varchar(20),
  c_char       char(5),
  c_bytea      bytea,
  c_date       date,
  c_time       time,
  c_timetz     timetz,
  c_timestamp  timestamp,
  c_timestamptz timestamptz,
  c_ts_inf     timestamptz,
  c_interval   interval,
  c_json       json,
  c_jsonb      jsonb,
  c_uuid       uuid,
  c_inet       inet,
  c_cidr       cidr,
  c_macaddr    macaddr,
  c_bit        bit(4),
  c_varbit     varbit,
  c_int4range  int4range,
  c_tstzrange  tstzrange,
  c_point      point,
  c_xml        xml,
  c_tsvector   tsvector,
  c_enum       fixture_mood,
  c_domain     fixture_posint,
  c_int_arr    int4[],
  c_text_arr   text[],
  c_2d_arr     int4[][],
  c_num_arr    numeric[],
  c_enum_arr   fixture_mood[],
  c_jsonb_arr  jsonb[],
  c_null       text,
  c_oid        oid
);

INSERT INTO {{table}} VALUES (
  1, true, -32768, 2147483647, 9223372036854775807, 1.5, 3.141592653589793, 'NaN',
  12345678901234567890.0123456789, 0.000000000000000000000000000001, 1234.56,
  E'line1\nline2 "quoted" \\ back', 'varchar', 'ab', '\x00ff10'::bytea,
  '2024-02-29', '23:59:59.999999', '12:00:00+05:30', '2024-02-29 12:34:56.789',
  '2024-02-29 12:34:56.789+02', 'infinity', '1 year 2 mons 3 days 04:05:06.5',
  '{"b": 1, "a": [true, null]}', '{"b": 1, "a": [true, null]}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
  B'1010', B'101', '[1,10)', '[2024-01-01 00:00:00+00,2024-02-01 00:00:00+00)', '(1.5,2)',
  '<a>x</a>', 'a fat cat', 'happy', 7,
  '{1,NULL,3}', ARRAY['a b', 'c"d', NULL, 'NULL'], '{{1,2},{3,4}}', '{1.10,NaN}', '{sad,happy}',
  ARRAY['{"k": 1}'::jsonb, NULL], NULL, 42
);
