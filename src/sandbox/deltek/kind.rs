//! The tables of the Deltek fake, as a closed list: what every other part of it is keyed by.

/// A table of the fake. Counts from the sandbox scale N: projects N/4, phases N/2, tasks N
/// (the biggest stream: N rows), firms N/2, contacts N, employees max(20, N/50),
/// opportunities N/8, activities N/2, AP/AR/JE ledger lines N/4 each, GL accounts
/// max(40, N/200).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Project,
    Phase,
    Task,
    Firm,
    Contact,
    Employee,
    Opportunity,
    Activity,
    Ap,
    Ar,
    Je,
    GlAccount,
}

pub const ALL: [Kind; 12] = [
    Kind::Project,
    Kind::Phase,
    Kind::Task,
    Kind::Firm,
    Kind::Contact,
    Kind::Employee,
    Kind::Opportunity,
    Kind::Activity,
    Kind::Ap,
    Kind::Ar,
    Kind::Je,
    Kind::GlAccount,
];

impl Kind {
    /// The stream entity (`deltek.<entity>`) naming the table.
    pub fn entity(self) -> &'static str {
        match self {
            Kind::Project => "project",
            Kind::Phase => "project_phase",
            Kind::Task => "project_task",
            Kind::Firm => "firm",
            Kind::Contact => "contact",
            Kind::Employee => "employee",
            Kind::Opportunity => "opportunity",
            Kind::Activity => "activity",
            Kind::Ap => "ap_voucher",
            Kind::Ar => "ar_invoice",
            Kind::Je => "journal_entry",
            Kind::GlAccount => "gl_account",
        }
    }

    pub fn from_entity(e: &str) -> Option<Kind> {
        ALL.into_iter().find(|k| k.entity() == e)
    }

    /// Rows at start for sandbox scale `n`.
    pub fn initial_rows(self, n: u64) -> u64 {
        match self {
            Kind::Project => (n / 4).max(4),
            Kind::Phase => (n / 2).max(8),
            Kind::Task => n.max(16),
            Kind::Firm => (n / 2).max(4),
            Kind::Contact => n.max(4),
            Kind::Employee => (n / 50).max(20),
            Kind::Opportunity => (n / 8).max(4),
            Kind::Activity => (n / 2).max(4),
            Kind::Ap | Kind::Ar | Kind::Je => (n / 4).max(4),
            Kind::GlAccount => (n / 200).max(40),
        }
    }

    /// The hub path (after `/api/`) serving the table; the project levels and project-stage
    /// opportunities share `project` and are told apart by `wbstype` and filters.
    pub fn hub(self) -> &'static str {
        match self {
            Kind::Project | Kind::Phase | Kind::Task => "project",
            Kind::Firm => "firm",
            Kind::Contact => "contact",
            Kind::Employee => "employee",
            Kind::Opportunity => "opportunity",
            Kind::Activity => "activity",
            Kind::Ap => "psaledger/ap",
            Kind::Ar => "psaledger/in",
            Kind::Je => "psaledger/je",
            Kind::GlAccount => "accountconfiguration/glaccount",
        }
    }

    /// The table's tag in `rng::row_key`: rows of different tables draw different values.
    pub fn index(self) -> u32 {
        self as u32 + 40
    }
}
