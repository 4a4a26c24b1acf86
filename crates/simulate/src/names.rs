//! Word lists for generated people and places. Surnames are drawn with a
//! Zipf-like weight so that the first few are very common, as in real
//! registers: the look-alike "same surname, unrelated" is then frequent.

pub const SURNAMES: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke", "Khan", "Lewis",
    "Harris", "Martin", "Cooper", "King", "Lee", "Baker", "Harrison", "Morgan", "Allen", "James", "Scott", "Phillips",
    "Watson", "Davis", "Parker", "Price", "Bennett", "Young", "Griffiths", "Mitchell", "Kelly", "Cook", "Carter",
    "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy", "Miller", "Cox", "Richards", "Khalid", "Marshall",
    "Anderson", "Simpson", "Ellis", "Adams", "Singh", "Begum", "Wilkinson", "Foster", "Chapman", "Powell", "Webb",
    "Rogers", "Gray", "Mason", "Ali", "Hunt", "Hussain", "Campbell", "Matthews", "Owen", "Palmer", "Holmes", "Mills",
    "Barnes", "Knight", "Lloyd", "Butler", "Russell", "Barker", "Fisher", "Stevens", "Jenkins", "Murray", "Dixon",
    "Harvey", "Nowak", "Kowalski", "Novak", "Moreau", "Rossi", "Fernandes", "Okafor", "Mensah", "Nguyen", "Sato",
    "Lindqvist", "Van der Berg", "O'Brien", "MacDonald", "Müller", "Schmidt", "Dubois", "García", "Łukasik", "Ahmed",
];

pub const GIVEN_NAMES: &[&str] = &[
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo", "Lily", "Arthur",
    "Isabella", "Muhammad", "Rosie", "Oscar", "Sophia", "Charlie", "Grace", "Jacob", "Freya", "Thomas", "Olivia",
    "Henry", "Florence", "William", "Emily", "James", "Ella", "Alfie", "Evie", "Joshua", "Poppy", "Freddie", "Sienna",
    "Archie", "Ruby", "Ethan", "Daisy", "Isaac", "Alice", "Alexander", "Sofia", "Joseph", "Phoebe", "Edward", "Chloe",
    "Samuel", "Matilda", "Max", "Elsie", "Daniel", "Harper", "Logan", "Layla", "Lucas", "Zara", "Adam", "Aisha",
    "Mohammed", "Fatima", "Peter", "Margaret", "David", "Susan", "John", "Mary", "Michael", "Patricia", "Robert",
    "Linda", "Andrzej", "Zofia", "Kwame", "Ama", "Minh", "Yuki", "Sven", "Ingrid", "José", "Chiara",
];

pub const STREETS: &[&str] = &[
    "High Street", "Station Road", "Church Lane", "Victoria Road", "Green Lane", "Manor Road", "Park Avenue",
    "Queens Road", "Mill Lane", "New Road", "School Lane", "King Street", "The Crescent", "Grange Road", "Kings Road",
    "Albert Road", "Springfield Road", "West Street", "Chester Road", "London Road", "Orchard Close", "North Street",
    "Elm Grove", "Meadow Way", "Windsor Road", "Highfield Road", "Stanley Road", "York Road", "Richmond Road",
    "Mount Pleasant",
];

/// Sites (offices) and the towns around them; also the postcode area prefix.
pub const SITES: &[(&str, &str, &str)] = &[
    ("north", "Harrowgate", "HG"),
    ("south", "Brighton", "BN"),
    ("east", "Norwich", "NR"),
    ("west", "Bristol", "BS"),
    ("central", "Leicester", "LE"),
    ("coast", "Plymouth", "PL"),
    ("valley", "Cardiff", "CF"),
    ("lakes", "Kendal", "LA"),
];

/// Zipf-like weights over a list: item `i` weighs `1 / (i + 2)`.
pub fn zipf_weights(n: usize) -> Vec<f64> {
    (0..n).map(|i| 1.0 / (i as f64 + 2.0)).collect()
}
