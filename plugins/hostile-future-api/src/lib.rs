//! Test fixture, never shipped: a component built against `botyard:plugin@9.0.0`, which no
//! botyard supports; loading it must fail with a message naming the supported versions.

wit_bindgen::generate!({
    world: "custom-app",
    path: "wit",
});

botyard_plugin_sdk::manifest!();

struct Future;

impl Guest for Future {
    fn call(args: String) -> Result<String, String> {
        botyard::plugin::host::log("called");
        Ok(args)
    }
}

export!(Future);
