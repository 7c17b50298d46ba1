//! Every invalid value is a `ConfigError` naming its field.

use std::time::Duration;

use seawall::bulkhead::BulkheadLayer;

#[test]
fn every_bad_value_names_its_field() {
    let b = BulkheadLayer::builder;
    let ms = Duration::from_millis;
    for (builder, field) in [
        (b().max_concurrent(0), "max_concurrent"),
        (b().name(""), "name"),
        (b().max_wait(ms(10)).max_waiting(0), "max_waiting"),
        (b().max_waiting(10), "max_waiting"),
    ] {
        let debug = format!("{builder:?}");
        let err = builder.build().expect_err(&debug);
        assert_eq!(
            (err.component(), err.field()),
            ("bulkhead", field),
            "{debug}"
        );
        assert!(err.to_string().contains(field));
    }
    let handle = b().build().unwrap().handle();
    assert_eq!(handle.set_limit(0).unwrap_err().field(), "limit");
}

#[test]
fn defaults_and_boundaries_build() {
    let b = BulkheadLayer::builder;
    assert_eq!(b().build().unwrap().handle().limit(), 25);
    for builder in [
        b().max_concurrent(1),
        b().max_concurrent(u32::MAX),
        b().max_wait(Duration::MAX).max_waiting(1),
        b().max_wait(Duration::from_nanos(1)),
    ] {
        assert!(builder.build().is_ok());
    }
}
