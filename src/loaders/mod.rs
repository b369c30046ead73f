//! Everything that writes: warehouse loads (and, later, the CRM → ERP sink stage).

pub mod warehouse;
