//! Tokens of CSML source with their positions (spec §2.1–2.4). Owned by the parser work.
