//! Host bindings of the WIT worlds, one module per supported API version. A new API version
//! adds a module here (its own `bindgen!`) and an adapter arm in `host.rs`.

pub mod v0_1 {
    //! `botyard:plugin@0.1.0` (wit/botyard-plugin@0.1.0).

    pub mod app {
        wasmtime::component::bindgen!({
            world: "custom-app",
            path: "../../wit/botyard-plugin@0.1.0",
            exports: { default: async },
        });
    }

    pub mod connector {
        wasmtime::component::bindgen!({
            world: "channel-connector",
            path: "../../wit/botyard-plugin@0.1.0",
            exports: { default: async },
            with: {
                "botyard:plugin/types": super::app::botyard::plugin::types,
                "botyard:plugin/host": super::app::botyard::plugin::host,
                "botyard:plugin/kv": super::app::botyard::plugin::kv,
            },
        });
    }

    pub use app::botyard::plugin::{host, kv, types};
}
