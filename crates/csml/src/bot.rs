//! A compiled bot: parsed flows, evaluated constants, resolved imports/inserts and component
//! templates. Immutable, `Send + Sync`, cached per bot version by the platform.

use crate::api::{BotSource, Validation};

#[derive(Debug)]
pub struct Bot {
    pub source: BotSource,
}

impl Bot {
    /// Parse, lint and prepare a bot. Fails with the validation report when it has errors.
    pub fn compile(source: BotSource) -> Result<Bot, Validation> {
        let _ = source;
        todo!("compile")
    }
}
