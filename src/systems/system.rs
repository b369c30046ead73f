//! The closed list of systems (see the module doc of `systems`).

use serde::{Deserialize, Serialize};

use crate::names::stored_by_name;

/// One external system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    /// Dataverse (Dynamics 365 Sales): the CRM's Web API.
    Dataverse,
    /// Dynamics 365 Business Central: the ERP's API v2.0.
    BusinessCentral,
    /// Deltek Vantagepoint: the ERP's REST API.
    Deltek,
    /// Pipedrive: the CRM's API v2 (v1 where v2 has no endpoint).
    Pipedrive,
    /// Looker: the reverse stream (query tasks and saved Looks).
    Looker,
}

stored_by_name!(System, "system", {
    Dataverse => "dataverse",
    BusinessCentral => "business_central",
    Deltek => "deltek",
    Pipedrive => "pipedrive",
    Looker => "looker",
});

impl System {
    /// Whether its one credential is an OAuth client secret (`mlc connection add` reads it
    /// from standard input when nothing else is given); the others name theirs
    /// (`password=…`, `api_token=…`).
    pub fn has_client_secret(self) -> bool {
        match self {
            System::Dataverse | System::BusinessCentral | System::Looker => true,
            System::Deltek | System::Pipedrive => false,
        }
    }

    /// The names, for messages that list what is accepted.
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_text_and_serde() {
        for s in System::ALL {
            assert_eq!(s.as_str().parse::<System>().unwrap(), *s);
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert!("sap".parse::<System>().is_err());
        assert_eq!(
            System::names(),
            "dataverse, business_central, deltek, pipedrive, looker"
        );
    }
}
