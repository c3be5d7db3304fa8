//! The facade's default features are the observability stack; the rest is opt-in.

#[test]
fn the_default_features_are_the_observability_stack() {
    let manifest = include_str!("../Cargo.toml");
    let default = manifest
        .lines()
        .find(|line| line.starts_with("default = "))
        .expect("a default feature list");
    for feature in ["\"logging\"", "\"metrics\"", "\"tracing\""] {
        assert!(default.contains(feature), "{default} has {feature}");
    }
    for feature in ["\"idempotency\"", "\"dynamodb\"", "\"batch\"", "\"events\""] {
        assert!(
            !default.contains(feature),
            "{default} leaves {feature} opt-in"
        );
    }
}
