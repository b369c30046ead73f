//! Word lists the data generator picks from (names, companies, places, labels). Every entry
//! is plain ASCII without quotes or backslashes, so it is written into JSON without escaping;
//! the lower-case "slug" twins build consistent emails and web sites.

/// First part of a company name and its slug.
pub const COMPANY_HEAD: &[(&str, &str)] = &[
    ("Northwind", "northwind"),
    ("Contoso", "contoso"),
    ("Fabrikam", "fabrikam"),
    ("Adventure Works", "adventureworks"),
    ("Blue Yonder", "blueyonder"),
    ("Alpine", "alpine"),
    ("Coho", "coho"),
    ("Litware", "litware"),
    ("Proseware", "proseware"),
    ("Tailspin", "tailspin"),
    ("Wingtip", "wingtip"),
    ("Woodgrove", "woodgrove"),
    ("Trey", "trey"),
    ("Lucerne", "lucerne"),
    ("Margie's", "margies"),
    ("Humongous", "humongous"),
    ("Graphic Design", "graphicdesign"),
    ("City Power", "citypower"),
    ("Southridge", "southridge"),
    ("Wide World", "wideworld"),
    ("Consolidated", "consolidated"),
    ("Bellows", "bellows"),
    ("Cedar Point", "cedarpoint"),
    ("Redwood", "redwood"),
    ("Granite", "granite"),
    ("Summit", "summit"),
    ("Harbor", "harbor"),
    ("Silverline", "silverline"),
    ("Ironbridge", "ironbridge"),
    ("Brightwater", "brightwater"),
    ("Oakridge", "oakridge"),
    ("Pinnacle", "pinnacle"),
    ("Meridian", "meridian"),
    ("Crescent", "crescent"),
    ("Evergreen", "evergreen"),
    ("Keystone", "keystone"),
    ("Lakeside", "lakeside"),
    ("Maple Leaf", "mapleleaf"),
    ("Nordic", "nordic"),
    ("Orion", "orion"),
    ("Pacific Rim", "pacificrim"),
    ("Quantum", "quantum"),
    ("Riverbend", "riverbend"),
    ("Sterling", "sterling"),
    ("Trident", "trident"),
    ("Union Square", "unionsquare"),
    ("Vanguard", "vanguard"),
    ("Westfield", "westfield"),
    ("Apex", "apex"),
    ("Beacon", "beacon"),
    ("Cobalt", "cobalt"),
    ("Delta Ridge", "deltaridge"),
    ("Eastgate", "eastgate"),
    ("Foxhall", "foxhall"),
    ("Greenfield", "greenfield"),
    ("Highland", "highland"),
    ("Ivory Tower", "ivorytower"),
    ("Juniper", "juniper"),
    ("Kingsley", "kingsley"),
    ("Lindqvist", "lindqvist"),
];

/// Second part of a company name and its slug.
pub const COMPANY_NOUN: &[(&str, &str)] = &[
    ("Traders", "traders"),
    ("Logistics", "logistics"),
    ("Engineering", "engineering"),
    ("Partners", "partners"),
    ("Analytics", "analytics"),
    ("Architects", "architects"),
    ("Consulting", "consulting"),
    ("Manufacturing", "manufacturing"),
    ("Foods", "foods"),
    ("Pharmaceuticals", "pharma"),
    ("Energy", "energy"),
    ("Construction", "construction"),
    ("Software", "software"),
    ("Systems", "systems"),
    ("Holdings", "holdings"),
    ("Capital", "capital"),
    ("Health", "health"),
    ("Media", "media"),
    ("Retail", "retail"),
    ("Outfitters", "outfitters"),
    ("Motors", "motors"),
    ("Airlines", "airlines"),
    ("Insurance", "insurance"),
    ("Bank", "bank"),
    ("Labs", "labs"),
    ("Design", "design"),
    ("Studios", "studios"),
    ("Electric", "electric"),
    ("Telecom", "telecom"),
    ("Shipping", "shipping"),
    ("Realty", "realty"),
    ("Foundry", "foundry"),
    ("Textiles", "textiles"),
    ("Brewing", "brewing"),
    ("Robotics", "robotics"),
    ("Biotech", "biotech"),
    ("Solutions", "solutions"),
    ("Services", "services"),
    ("Industries", "industries"),
    ("Ventures", "ventures"),
];

/// Legal-form suffixes (with their leading space; may be empty).
pub const COMPANY_SUFFIX: &[&str] = &[
    " Ltd",
    " Inc.",
    " LLC",
    " GmbH",
    " Group",
    " Co.",
    "",
    " plc",
    " S.A.",
    " B.V.",
    " AG",
    " Corporation",
];

/// Top-level domains for company web sites and emails.
pub const TLD: &[&str] = &[
    ".com", ".com", ".com", ".net", ".co.uk", ".de", ".io", ".org",
];

/// Member `k` (from 0) of the sandbox firm's staff, as (index in [`FIRST`], index in
/// [`LAST`], serial). Dataverse user `k + 1` and Deltek employee `k` are the same person, so a
/// sink can match owners to employees by email, as in a real firm.
pub fn staff(k: u64) -> (usize, usize, u64) {
    let nf = FIRST.len() as u64;
    let nl = LAST.len() as u64;
    ((k % nf) as usize, ((k / nf) % nl) as usize, k / (nf * nl))
}

/// Given names (display, slug).
pub const FIRST: &[(&str, &str)] = &[
    ("James", "james"),
    ("Mary", "mary"),
    ("Robert", "robert"),
    ("Patricia", "patricia"),
    ("John", "john"),
    ("Jennifer", "jennifer"),
    ("Michael", "michael"),
    ("Linda", "linda"),
    ("David", "david"),
    ("Elizabeth", "elizabeth"),
    ("William", "william"),
    ("Barbara", "barbara"),
    ("Richard", "richard"),
    ("Susan", "susan"),
    ("Joseph", "joseph"),
    ("Jessica", "jessica"),
    ("Thomas", "thomas"),
    ("Sarah", "sarah"),
    ("Charles", "charles"),
    ("Karen", "karen"),
    ("Daniel", "daniel"),
    ("Nancy", "nancy"),
    ("Matthew", "matthew"),
    ("Lisa", "lisa"),
    ("Anthony", "anthony"),
    ("Betty", "betty"),
    ("Mark", "mark"),
    ("Sandra", "sandra"),
    ("Steven", "steven"),
    ("Ashley", "ashley"),
    ("Andrew", "andrew"),
    ("Emily", "emily"),
    ("Kenneth", "kenneth"),
    ("Donna", "donna"),
    ("Joshua", "joshua"),
    ("Michelle", "michelle"),
    ("Kevin", "kevin"),
    ("Carol", "carol"),
    ("Brian", "brian"),
    ("Amanda", "amanda"),
    ("Dana", "dana"),
    ("Melissa", "melissa"),
    ("Timothy", "timothy"),
    ("Deborah", "deborah"),
    ("Ronald", "ronald"),
    ("Stephanie", "stephanie"),
    ("Jason", "jason"),
    ("Rebecca", "rebecca"),
    ("Jeffrey", "jeffrey"),
    ("Laura", "laura"),
    ("Ryan", "ryan"),
    ("Helen", "helen"),
    ("Jacob", "jacob"),
    ("Sharon", "sharon"),
    ("Gary", "gary"),
    ("Cynthia", "cynthia"),
    ("Nicholas", "nicholas"),
    ("Kathleen", "kathleen"),
    ("Eric", "eric"),
    ("Amy", "amy"),
    ("Sofia", "sofia"),
    ("Lukas", "lukas"),
    ("Emma", "emma"),
    ("Noah", "noah"),
    ("Mia", "mia"),
    ("Liam", "liam"),
    ("Hannah", "hannah"),
    ("Jonas", "jonas"),
    ("Lea", "lea"),
    ("Matteo", "matteo"),
    ("Chiara", "chiara"),
    ("Hugo", "hugo"),
    ("Camille", "camille"),
    ("Pierre", "pierre"),
    ("Ingrid", "ingrid"),
    ("Lars", "lars"),
    ("Astrid", "astrid"),
    ("Priya", "priya"),
    ("Arjun", "arjun"),
    ("Wei", "wei"),
    ("Mei", "mei"),
    ("Hiroshi", "hiroshi"),
    ("Yuki", "yuki"),
    ("Carlos", "carlos"),
    ("Lucia", "lucia"),
    ("Diego", "diego"),
    ("Ana", "ana"),
    ("Omar", "omar"),
    ("Fatima", "fatima"),
    ("Kwame", "kwame"),
];

/// Family names (display, slug).
pub const LAST: &[(&str, &str)] = &[
    ("Smith", "smith"),
    ("Johnson", "johnson"),
    ("Williams", "williams"),
    ("Brown", "brown"),
    ("Jones", "jones"),
    ("Garcia", "garcia"),
    ("Miller", "miller"),
    ("Davis", "davis"),
    ("Rodriguez", "rodriguez"),
    ("Martinez", "martinez"),
    ("Hernandez", "hernandez"),
    ("Lopez", "lopez"),
    ("Gonzalez", "gonzalez"),
    ("Wilson", "wilson"),
    ("Anderson", "anderson"),
    ("Thomas", "thomas"),
    ("Taylor", "taylor"),
    ("Moore", "moore"),
    ("Jackson", "jackson"),
    ("Martin", "martin"),
    ("Lee", "lee"),
    ("Perez", "perez"),
    ("Thompson", "thompson"),
    ("White", "white"),
    ("Harris", "harris"),
    ("Sanchez", "sanchez"),
    ("Clark", "clark"),
    ("Ramirez", "ramirez"),
    ("Lewis", "lewis"),
    ("Robinson", "robinson"),
    ("Walker", "walker"),
    ("Young", "young"),
    ("Allen", "allen"),
    ("King", "king"),
    ("Wright", "wright"),
    ("Scott", "scott"),
    ("Torres", "torres"),
    ("Nguyen", "nguyen"),
    ("Hill", "hill"),
    ("Flores", "flores"),
    ("Green", "green"),
    ("Adams", "adams"),
    ("Nelson", "nelson"),
    ("Baker", "baker"),
    ("Hall", "hall"),
    ("Rivera", "rivera"),
    ("Campbell", "campbell"),
    ("Mitchell", "mitchell"),
    ("Carter", "carter"),
    ("Roberts", "roberts"),
    ("Ruiz", "ruiz"),
    ("O'Brien", "obrien"),
    ("Muller", "muller"),
    ("Schmidt", "schmidt"),
    ("Schneider", "schneider"),
    ("Fischer", "fischer"),
    ("Weber", "weber"),
    ("Meyer", "meyer"),
    ("Wagner", "wagner"),
    ("Becker", "becker"),
    ("Dubois", "dubois"),
    ("Lefebvre", "lefebvre"),
    ("Rossi", "rossi"),
    ("Russo", "russo"),
    ("Ferrari", "ferrari"),
    ("Jansen", "jansen"),
    ("de Vries", "devries"),
    ("Andersson", "andersson"),
    ("Johansson", "johansson"),
    ("Nielsen", "nielsen"),
    ("Hansen", "hansen"),
    ("Kowalski", "kowalski"),
    ("Novak", "novak"),
    ("Patel", "patel"),
    ("Sharma", "sharma"),
    ("Chen", "chen"),
    ("Wang", "wang"),
    ("Tanaka", "tanaka"),
    ("Sato", "sato"),
    ("Kim", "kim"),
    ("Park", "park"),
    ("Silva", "silva"),
    ("Santos", "santos"),
    ("Costa", "costa"),
    ("Mensah", "mensah"),
    ("Okafor", "okafor"),
    ("Haddad", "haddad"),
    ("Cohen", "cohen"),
    ("Murphy", "murphy"),
    ("Kelly", "kelly"),
];

/// Free-mail domains for contacts without a company.
pub const FREEMAIL: &[&str] = &["outlook.com", "gmail.com", "yahoo.com", "proton.me"];

/// A city with its region, country, coordinates (micro-degrees), phone country code and
/// postal-code shape (`9` = digit, `A` = letter, anything else literal).
#[derive(Debug, Clone, Copy)]
pub struct City {
    pub city: &'static str,
    pub state: &'static str,
    pub country: &'static str,
    pub lat: i64,
    pub lon: i64,
    pub dial: &'static str,
    pub postal: &'static str,
}

macro_rules! city {
    ($c:expr, $s:expr, $n:expr, $lat:expr, $lon:expr, $d:expr, $p:expr) => {
        City {
            city: $c,
            state: $s,
            country: $n,
            lat: $lat,
            lon: $lon,
            dial: $d,
            postal: $p,
        }
    };
}

pub const CITIES: &[City] = &[
    city!(
        "Seattle",
        "WA",
        "United States",
        47_606_209,
        -122_332_071,
        "+1 206",
        "98199"
    ),
    city!(
        "Redmond",
        "WA",
        "United States",
        47_673_988,
        -122_121_513,
        "+1 425",
        "98099"
    ),
    city!(
        "New York",
        "NY",
        "United States",
        40_712_776,
        -74_005_974,
        "+1 212",
        "10099"
    ),
    city!(
        "Chicago",
        "IL",
        "United States",
        41_878_113,
        -87_629_799,
        "+1 312",
        "60699"
    ),
    city!(
        "Austin",
        "TX",
        "United States",
        30_267_153,
        -97_743_061,
        "+1 512",
        "78799"
    ),
    city!(
        "Boston",
        "MA",
        "United States",
        42_360_082,
        -71_058_880,
        "+1 617",
        "02199"
    ),
    city!(
        "Denver",
        "CO",
        "United States",
        39_739_236,
        -104_990_251,
        "+1 303",
        "80299"
    ),
    city!(
        "Atlanta",
        "GA",
        "United States",
        33_748_995,
        -84_387_982,
        "+1 404",
        "30399"
    ),
    city!(
        "San Francisco",
        "CA",
        "United States",
        37_774_929,
        -122_419_416,
        "+1 415",
        "94199"
    ),
    city!(
        "Los Angeles",
        "CA",
        "United States",
        34_052_234,
        -118_243_685,
        "+1 213",
        "90099"
    ),
    city!(
        "Miami",
        "FL",
        "United States",
        25_761_680,
        -80_191_790,
        "+1 305",
        "33199"
    ),
    city!(
        "Minneapolis",
        "MN",
        "United States",
        44_977_753,
        -93_265_011,
        "+1 612",
        "55499"
    ),
    city!(
        "Toronto",
        "ON",
        "Canada",
        43_653_226,
        -79_383_184,
        "+1 416",
        "M9A 9A9"
    ),
    city!(
        "Vancouver",
        "BC",
        "Canada",
        49_282_730,
        -123_120_735,
        "+1 604",
        "V9A 9A9"
    ),
    city!(
        "Montreal",
        "QC",
        "Canada",
        45_501_689,
        -73_567_256,
        "+1 514",
        "H9A 9A9"
    ),
    city!(
        "London",
        "Greater London",
        "United Kingdom",
        51_507_351,
        -127_758,
        "+44 20",
        "EC9A 9AA"
    ),
    city!(
        "Manchester",
        "Greater Manchester",
        "United Kingdom",
        53_480_759,
        -2_242_631,
        "+44 161",
        "M9 9AA"
    ),
    city!(
        "Edinburgh",
        "Scotland",
        "United Kingdom",
        55_953_252,
        -3_188_267,
        "+44 131",
        "EH9 9AA"
    ),
    city!(
        "Dublin", "Leinster", "Ireland", 53_349_805, -6_260_310, "+353 1", "D99 A9A9"
    ),
    city!(
        "Berlin", "Berlin", "Germany", 52_520_008, 13_404_954, "+49 30", "10999"
    ),
    city!(
        "Munich", "Bavaria", "Germany", 48_135_125, 11_581_981, "+49 89", "80999"
    ),
    city!(
        "Hamburg", "Hamburg", "Germany", 53_551_085, 9_993_682, "+49 40", "20999"
    ),
    city!(
        "Frankfurt",
        "Hesse",
        "Germany",
        50_110_922,
        8_682_127,
        "+49 69",
        "60999"
    ),
    city!(
        "Paris",
        "Ile-de-France",
        "France",
        48_856_614,
        2_352_222,
        "+33 1",
        "75099"
    ),
    city!(
        "Lyon",
        "Auvergne-Rhone-Alpes",
        "France",
        45_764_043,
        4_835_659,
        "+33 4",
        "69009"
    ),
    city!(
        "Amsterdam",
        "North Holland",
        "Netherlands",
        52_367_573,
        4_904_139,
        "+31 20",
        "1099 AA"
    ),
    city!(
        "Rotterdam",
        "South Holland",
        "Netherlands",
        51_924_420,
        4_477_733,
        "+31 10",
        "3099 AA"
    ),
    city!(
        "Brussels", "Brussels", "Belgium", 50_850_346, 4_351_721, "+32 2", "1099"
    ),
    city!(
        "Zurich",
        "Zurich",
        "Switzerland",
        47_376_887,
        8_541_694,
        "+41 44",
        "8099"
    ),
    city!(
        "Vienna", "Vienna", "Austria", 48_208_174, 16_373_819, "+43 1", "1099"
    ),
    city!(
        "Milan", "Lombardy", "Italy", 45_464_204, 9_189_982, "+39 02", "20199"
    ),
    city!(
        "Rome", "Lazio", "Italy", 41_902_783, 12_496_366, "+39 06", "00199"
    ),
    city!(
        "Madrid", "Madrid", "Spain", 40_416_775, -3_703_790, "+34 91", "28099"
    ),
    city!(
        "Barcelona",
        "Catalonia",
        "Spain",
        41_385_064,
        2_173_403,
        "+34 93",
        "08099"
    ),
    city!(
        "Lisbon", "Lisbon", "Portugal", 38_722_252, -9_139_337, "+351 21", "1099-999"
    ),
    city!(
        "Stockholm",
        "Stockholm",
        "Sweden",
        59_329_323,
        18_068_581,
        "+46 8",
        "111 99"
    ),
    city!(
        "Copenhagen",
        "Capital Region",
        "Denmark",
        55_676_097,
        12_568_337,
        "+45 3",
        "1999"
    ),
    city!(
        "Oslo", "Oslo", "Norway", 59_913_869, 10_752_245, "+47 2", "0199"
    ),
    city!(
        "Helsinki", "Uusimaa", "Finland", 60_169_856, 24_938_379, "+358 9", "00199"
    ),
    city!(
        "Warsaw", "Masovia", "Poland", 52_229_676, 21_012_229, "+48 22", "00-999"
    ),
    city!(
        "Prague", "Prague", "Czechia", 50_075_538, 14_437_800, "+420 2", "110 99"
    ),
    city!(
        "Sydney",
        "NSW",
        "Australia",
        -33_868_820,
        151_209_296,
        "+61 2",
        "2099"
    ),
    city!(
        "Melbourne",
        "VIC",
        "Australia",
        -37_813_628,
        144_963_058,
        "+61 3",
        "3099"
    ),
    city!(
        "Auckland",
        "Auckland",
        "New Zealand",
        -36_848_460,
        174_763_332,
        "+64 9",
        "1099"
    ),
    city!(
        "Singapore",
        "Singapore",
        "Singapore",
        1_352_083,
        103_819_836,
        "+65 6",
        "099999"
    ),
    city!(
        "Tokyo",
        "Tokyo",
        "Japan",
        35_676_192,
        139_650_311,
        "+81 3",
        "100-9999"
    ),
    city!(
        "Bangalore",
        "Karnataka",
        "India",
        12_971_599,
        77_594_563,
        "+91 80",
        "560099"
    ),
    city!(
        "Sao Paulo",
        "SP",
        "Brazil",
        -23_550_520,
        -46_633_308,
        "+55 11",
        "01099-999"
    ),
    city!(
        "Mexico City",
        "CDMX",
        "Mexico",
        19_432_608,
        -99_133_209,
        "+52 55",
        "06099"
    ),
    city!(
        "Johannesburg",
        "Gauteng",
        "South Africa",
        -26_204_103,
        28_047_305,
        "+27 11",
        "2099"
    ),
];

/// Street names and types for address lines.
pub const STREET: &[&str] = &[
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "River",
    "Church",
    "High",
    "Market",
    "King",
    "Queen",
    "Station",
    "Mill",
    "Bridge",
    "Harbor",
    "Sunset",
    "Broad",
    "Chestnut",
    "Spring",
    "Willow",
    "Meadow",
    "Forest",
    "Garden",
    "Union",
    "Victoria",
    "Commerce",
    "Industrial",
    "Technology",
    "Innovation",
    "Canal",
    "Castle",
];
pub const STREET_TYPE: &[&str] = &[
    " Street",
    " Avenue",
    " Road",
    " Boulevard",
    " Lane",
    " Way",
    " Drive",
    " Place",
    " Court",
];
pub const LINE2: &[&str] = &["Suite ", "Floor ", "Building ", "Unit ", "PO Box "];

pub const JOB_TITLE: &[&str] = &[
    "Chief Executive Officer",
    "Chief Financial Officer",
    "Chief Operating Officer",
    "Chief Technology Officer",
    "VP of Sales",
    "VP of Marketing",
    "VP of Engineering",
    "Head of Procurement",
    "Purchasing Manager",
    "Finance Director",
    "Controller",
    "IT Director",
    "IT Manager",
    "Operations Manager",
    "Project Manager",
    "Program Manager",
    "Account Manager",
    "Sales Manager",
    "Sales Representative",
    "Marketing Manager",
    "Office Manager",
    "Business Analyst",
    "Solutions Architect",
    "Software Engineer",
    "HR Manager",
    "Legal Counsel",
    "Facilities Manager",
    "Principal",
    "Partner",
    "Owner",
];

pub const DEPARTMENT: &[&str] = &[
    "Sales",
    "Marketing",
    "Finance",
    "Procurement",
    "IT",
    "Operations",
    "Engineering",
    "Human Resources",
    "Legal",
    "Executive",
    "Customer Service",
    "Research and Development",
];

/// Titles used for system users.
pub const USER_TITLE: &[&str] = &["Mr.", "Ms.", "Dr.", "Mx."];
pub const USER_JOB: &[&str] = &[
    "Account Executive",
    "Sales Development Representative",
    "Sales Manager",
    "Regional Sales Director",
    "Customer Success Manager",
    "Pre-Sales Consultant",
    "Inside Sales Representative",
    "Sales Operations Analyst",
    "Key Account Manager",
    "Business Development Manager",
];

/// Product names (the product catalog and opportunity topics).
pub const PRODUCT: &[&str] = &[
    "Project Accounting Suite",
    "Resource Planner",
    "Time and Expense",
    "Billing Engine",
    "CRM Connector",
    "Analytics Workspace",
    "Data Warehouse Starter",
    "Cloud Backup",
    "Managed Firewall",
    "Security Audit",
    "Implementation Services",
    "Training Day",
    "Premier Support",
    "Standard Support",
    "Migration Package",
    "Integration Hub",
    "Mobile Field App",
    "Document Management",
    "E-Signature Add-on",
    "Payroll Module",
    "Procurement Portal",
    "Inventory Sensor Kit",
    "Barcode Scanner",
    "Laptop Pro 14",
    "Docking Station",
    "Conference Room Kit",
    "Wireless Headset",
    "Server Rack 42U",
    "Network Switch 48-port",
    "Consulting Hours",
    "Architecture Review",
    "Performance Tuning",
    "Custom Report Pack",
    "API Access Tier",
    "Storage Expansion 1TB",
    "Disaster Recovery Plan",
    "Compliance Pack",
    "Onboarding Bundle",
    "Executive Dashboard",
    "Forecasting Add-on",
];

/// Opportunity / quote topic templates (the product name follows).
pub const TOPIC_HEAD: &[&str] = &[
    "New implementation of ",
    "Renewal: ",
    "Expansion - ",
    "Pilot of ",
    "Upgrade to ",
    "Replacement of legacy system with ",
    "Additional seats for ",
    "Enterprise agreement incl. ",
    "Proof of concept: ",
    "Phase 2 rollout of ",
];

/// Lead subjects (the product name follows).
pub const LEAD_HEAD: &[&str] = &[
    "Interested in ",
    "Request for pricing: ",
    "Demo request - ",
    "Trade show contact re ",
    "Webinar follow-up: ",
    "Inbound enquiry about ",
    "Referral for ",
];

/// Sentence fragments for description fields.
pub const DESC_A: &[&str] = &[
    "Long-standing customer with a strong relationship at executive level.",
    "Prospect identified at the annual partner conference.",
    "Key strategic account in the region.",
    "Mid-sized firm evaluating a move to the cloud.",
    "Referred by an existing customer.",
    "Procurement runs a formal RFP process every two years.",
    "Budget approved for the next fiscal year.",
    "Decision maker changed recently; relationship needs rebuilding.",
    "Fast-growing company with offices in several countries.",
    "Price-sensitive buyer; prefers annual billing.",
];
pub const DESC_B: &[&str] = &[
    "Follow up after the quarterly business review.",
    "Send the updated proposal and the reference list.",
    "Schedule a workshop with the IT team.",
    "Legal review of the master agreement is pending.",
    "Interested in bundling support and training.",
    "Wants an on-site demo before committing.",
    "Competitor is also bidding.",
    "Invoices go to the shared finance mailbox.",
    "Prefers communication by email.",
    "Renewal date is close; start the conversation early.",
];

/// `industrycode` option labels (value, label).
pub const INDUSTRY: &[(i64, &str)] = &[
    (1, "Accounting"),
    (2, "Agriculture and Non-petrol Natural Resource Extraction"),
    (3, "Broadcasting Printing and Publishing"),
    (4, "Brokers"),
    (5, "Building Supply Retail"),
    (6, "Business Services"),
    (7, "Consulting"),
    (8, "Consumer Services"),
    (9, "Design, Direction and Creative Management"),
    (10, "Distributors, Dispatchers and Processors"),
    (11, "Doctor's Offices and Clinics"),
    (12, "Durable Manufacturing"),
    (13, "Eating and Drinking Places"),
    (14, "Entertainment Retail"),
    (15, "Equipment Rental and Leasing"),
    (16, "Financial"),
    (17, "Food and Tobacco Processing"),
    (18, "Inbound Capital Intensive Processing"),
    (19, "Inbound Repair and Services"),
    (20, "Insurance"),
    (21, "Legal Services"),
    (22, "Non-Durable Merchandise Retail"),
    (23, "Outbound Consumer Service"),
    (24, "Petrochemical Extraction and Distribution"),
    (25, "Service Retail"),
    (26, "SIG Affiliations"),
    (27, "Social Services"),
    (28, "Special Outbound Trade Contractors"),
    (29, "Specialty Realty"),
    (30, "Transportation"),
    (31, "Utility Creation and Distribution"),
    (32, "Vehicle Retail"),
    (33, "Wholesale"),
];
pub const ACCOUNT_CATEGORY: &[(i64, &str)] = &[(1, "Preferred Customer"), (2, "Standard")];
pub const CUSTOMER_TYPE: &[(i64, &str)] = &[
    (1, "Competitor"),
    (2, "Consultant"),
    (3, "Customer"),
    (3, "Customer"),
    (3, "Customer"),
    (3, "Customer"),
    (4, "Investor"),
    (5, "Partner"),
    (6, "Influencer"),
    (7, "Press"),
    (8, "Prospect"),
    (8, "Prospect"),
    (9, "Reseller"),
    (10, "Supplier"),
    (11, "Vendor"),
    (12, "Other"),
];
pub const OWNERSHIP: &[(i64, &str)] = &[
    (1, "Public"),
    (2, "Private"),
    (3, "Subsidiary"),
    (4, "Other"),
];
pub const LEAD_SOURCE: &[(i64, &str)] = &[
    (1, "Advertisement"),
    (2, "Employee Referral"),
    (3, "External Referral"),
    (4, "Partner"),
    (5, "Public Relations"),
    (6, "Seminar"),
    (7, "Trade Show"),
    (8, "Web"),
    (9, "Word of Mouth"),
    (10, "Other"),
];
pub const RATING: &[(i64, &str)] = &[(1, "Hot"), (2, "Warm"), (3, "Cold")];
pub const SALES_STAGE: &[(i64, &str)] =
    &[(0, "Qualify"), (1, "Develop"), (2, "Propose"), (3, "Close")];
pub const PRIORITY: &[(i64, &str)] = &[(1, "Default Value")];
pub const PRODUCT_TYPE: &[(i64, &str)] = &[
    (1, "Sales Inventory"),
    (2, "Miscellaneous Charges"),
    (3, "Services"),
    (4, "Flat Fees"),
];
