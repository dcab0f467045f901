use super::*;
use time::macros::{datetime, offset};

#[test]
fn datetime_forms() {
    let t = datetime!(2023-01-10 10:00:00.123456 UTC);
    assert_eq!(py_isoformat(t, 'T'), "2023-01-10T10:00:00.123456");
    assert_eq!(py_isoformat(t, ' '), "2023-01-10 10:00:00.123456");
    assert_eq!(py_isoformat_tz(t, 'T'), "2023-01-10T10:00:00.123456+00:00");
    assert_eq!(py_isoformat_tz(t, ' '), "2023-01-10 10:00:00.123456+00:00");
    assert_eq!(py_datetime(t), "2023-01-10 10:00:00.123456+00:00");
    assert_eq!(drf_datetime(t), "2023-01-10T10:00:00.123456Z");
}

#[test]
fn whole_seconds_have_no_fraction() {
    let t = datetime!(2023-01-10 10:00:00 UTC);
    assert_eq!(py_isoformat(t, 'T'), "2023-01-10T10:00:00");
    assert_eq!(py_isoformat_tz(t, 'T'), "2023-01-10T10:00:00+00:00");
    assert_eq!(py_datetime(t), "2023-01-10 10:00:00+00:00");
    assert_eq!(drf_datetime(t), "2023-01-10T10:00:00Z");
    // Nanoseconds below one microsecond are not shown, as Python cannot hold them.
    let t = datetime!(2023-01-10 10:00:00.000000999 UTC);
    assert_eq!(py_isoformat(t, 'T'), "2023-01-10T10:00:00");
    // One microsecond keeps all six digits.
    let t = datetime!(2023-01-10 10:00:00.000001 UTC);
    assert_eq!(drf_datetime(t), "2023-01-10T10:00:00.000001Z");
}

#[test]
fn other_offsets_are_shown_in_utc() {
    let t = datetime!(2023-01-10 12:30:00.5 +02:30);
    assert_eq!(py_datetime(t), "2023-01-10 10:00:00.500000+00:00");
    assert_eq!(drf_datetime(t), "2023-01-10T10:00:00.500000Z");
    // The conversion may cross midnight and a year end.
    let t = datetime!(2023-01-01 00:30:00 UTC).to_offset(offset!(+01:00));
    assert_eq!(py_isoformat(t, 'T'), "2023-01-01T00:30:00");
    let t = datetime!(2023-01-01 00:30:00 +01:00);
    assert_eq!(py_isoformat(t, 'T'), "2022-12-31T23:30:00");
}

#[test]
fn small_years_are_four_digits() {
    let t = datetime!(0999-03-04 05:06:07 UTC);
    assert_eq!(py_datetime(t), "0999-03-04 05:06:07+00:00");
    assert_eq!(drf_datetime(t), "0999-03-04T05:06:07Z");
    let t = datetime!(0001-01-01 00:00:00 UTC);
    assert_eq!(py_isoformat(t, 'T'), "0001-01-01T00:00:00");
    let t = datetime!(9999-12-31 23:59:59.999999 UTC);
    assert_eq!(py_isoformat(t, 'T'), "9999-12-31T23:59:59.999999");
}

#[test]
fn write_datetime_appends() {
    let mut out = String::from("at ");
    write_datetime(datetime!(2023-01-10 10:00:00 UTC), ' ', &mut out);
    assert_eq!(out, "at 2023-01-10 10:00:00");
}

#[test]
fn string_reprs() {
    let cases = [
        ("abc", "'abc'"),
        ("", "''"),
        ("it's", "\"it's\""),
        ("both ' and \"", "'both \\' and \"'"),
        ("say \"hi\"", "'say \"hi\"'"),
        ("back\\slash", "'back\\\\slash'"),
        ("a\nb\rc\td", "'a\\nb\\rc\\td'"),
        ("\x01\x7f", "'\\x01\\x7f'"),
        ("café", "'café'"),
    ];
    for (input, want) in cases {
        assert_eq!(py_str_repr(input), want, "{input:?}");
    }
}

#[test]
fn value_reprs() {
    let value: Value =
        serde_norway::from_str("{case: x, n: 1, f: 0.00001, l: [a, null], b: false, q: \"it's\"}")
            .unwrap();
    let mut out = String::new();
    py_repr(&value, &mut out);
    assert_eq!(
        out,
        "{'case': 'x', 'n': 1, 'f': 1e-05, 'l': ['a', None], 'b': False, 'q': \"it's\"}"
    );
    let mut out = String::new();
    py_repr(
        &serde_norway::from_str("[true, {}, [], 18446744073709551615]").unwrap(),
        &mut out,
    );
    assert_eq!(out, "[True, {}, [], 18446744073709551615]");
    let Value::Mapping(map) = serde_norway::from_str("{z: 1, a: 2}").unwrap() else {
        panic!("a mapping");
    };
    let mut out = String::new();
    py_repr_mapping(&map, &mut out);
    assert_eq!(out, "{'z': 1, 'a': 2}", "insertion order, as a dict");
}

#[test]
fn float_reprs() {
    let cases = [
        (2.0, "2.0"),
        (0.0, "0.0"),
        (-1.5, "-1.5"),
        (1e20, "1e+20"),
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-10, "1.5e-10"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
        (f64::NAN, "nan"),
    ];
    for (input, want) in cases {
        assert_eq!(py_float(input), want, "{input:?}");
    }
}

#[test]
fn decimals_have_ten_places() {
    assert_eq!(py_decimal(12.5), "12.5000000000");
    assert_eq!(py_decimal(0.0), "0.0000000000");
}
