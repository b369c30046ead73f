//! Everything that writes: warehouse loads and the CRM → ERP sink stage.

pub mod sink;
pub mod warehouse;
