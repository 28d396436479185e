//! Generator definitions shipped with vars (`generators/*.yaml` in the source tree), embedded at
//! build time by `build.rs`. A local definition of the same name wins (DESIGN §2).

/// Every shipped generator: (name, YAML text), sorted by name.
pub const SHIPPED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/shipped.rs"));

/// The YAML text of a shipped generator.
pub fn find(name: &str) -> Option<&'static str> {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}
