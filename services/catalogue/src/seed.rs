//! The films a new store opens with: generated deterministically (same films on every machine),
//! so `cargo xtask up` shows a real-looking shop. The stock service stocks the same ids.

use crate::domain::{MovieFields, Rating};

use videostore_kit::sample::{SAMPLE_FILMS, SplitMix64};

/// How many films a new store gets. Ids 1..=SEED_FILMS, in order.
pub(crate) const SEED_FILMS: usize = SAMPLE_FILMS as usize;

const ADJECTIVES: &[&str] = &[
    "Silent",
    "Crimson",
    "Last",
    "Hidden",
    "Broken",
    "Golden",
    "Midnight",
    "Distant",
    "Wild",
    "Forgotten",
    "Electric",
    "Frozen",
    "Burning",
    "Secret",
    "Lonely",
    "Restless",
    "Savage",
    "Gentle",
    "Iron",
    "Velvet",
    "Hollow",
    "Endless",
    "Bitter",
    "Northern",
    "Paper",
];
const NOUNS: &[&str] = &[
    "River",
    "Empire",
    "Garden",
    "Station",
    "Harbor",
    "Kingdom",
    "Mirror",
    "Highway",
    "Orchard",
    "Lighthouse",
    "Circus",
    "Frontier",
    "Cathedral",
    "Island",
    "Machine",
    "Summer",
    "Winter",
    "Signal",
    "Promise",
    "Voyage",
    "Shadow",
    "Carnival",
    "Desert",
    "Archive",
    "Horizon",
];
const PLACES: &[&str] = &[
    "Lisbon",
    "Kyoto",
    "Marrakesh",
    "Reykjavík",
    "Montréal",
    "São Paulo",
    "Kraków",
    "Zürich",
    "Istanbul",
    "Oaxaca",
    "Tbilisi",
    "Saint-Étienne",
    "Málaga",
    "Bergen",
    "Hanoi",
    "Dublin",
];
/// Titles in their own scripts, so search and display are exercised beyond ASCII.
const NATIVE_TITLES: &[&str] = &[
    "Летний дождь",
    "Тихий океан",
    "夜の航路",
    "千の風",
    "바다의 노래",
    "青い灯台",
    "Η τελευταία νύχτα",
    "Ο κήπος",
    "האי השקט",
    "رحلة الصحراء",
    "Café Amélie",
    "Déjà Vu à Paris",
    "Niño del río",
    "Über den Wolken",
    "Śnieżna noc",
    "Ölüdeniz",
];
const FIRST_NAMES: &[&str] = &[
    "Ana", "Tomás", "Yuki", "Ingrid", "Kwame", "Lena", "Marco", "Priya", "Olu", "Sofia", "Hiro",
    "Chloé", "Dmitri", "Amara", "Jonas", "Mei", "Rafael", "Noor", "Elif", "Søren",
];
const LAST_NAMES: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Rossi",
    "Kowalski",
    "Haddad",
    "Nakamura",
    "Fernández",
    "Novak",
    "Achebe",
    "Varga",
    "Ivanova",
    "Brennan",
    "Costa",
    "Müller",
];
/// The seed's genres, also the stock service's view of what a "genre" looks like.
pub(crate) const GENRES: &[&str] = &[
    "Drama",
    "Comedy",
    "Thriller",
    "Science Fiction",
    "Romance",
    "Documentary",
    "Animation",
    "Horror",
    "Adventure",
    "Crime",
    "Fantasy",
    "Musical",
    "Western",
    "Mystery",
    "Family",
];
const PLOTS: &[&str] = &[
    "A retired {job} returns to {place} to settle an old debt and finds the town changed beyond recognition.",
    "Two strangers share a night train to {place} and discover they are running from the same secret.",
    "When the {noun} closes for good, a young {job} has one summer to save it.",
    "A {job} with a failing memory writes letters to a daughter who may not exist.",
    "In {place}, a stubborn {job} and a runaway teenager cross the country in a stolen van.",
    "A small crew of misfits plans the most polite robbery {place} has ever seen.",
    "An expedition to the edge of the map finds a {noun} that should not be there.",
    "A family reunion in {place} goes wrong in every way a family reunion can.",
];
const JOBS: &[&str] = &[
    "detective",
    "pianist",
    "lighthouse keeper",
    "chef",
    "pilot",
    "teacher",
    "boxer",
    "cartographer",
    "nurse",
    "magician",
];

fn title(rng: &mut SplitMix64) -> String {
    match rng.below(10) {
        0 | 1 => format!("The {} {}", rng.pick(ADJECTIVES), rng.pick(NOUNS)),
        2 => format!("{} of the {} {}", rng.pick(NOUNS), rng.pick(ADJECTIVES), rng.pick(NOUNS)),
        3 => format!("Return to {}", rng.pick(PLACES)),
        4 => format!("{} {}", rng.pick(ADJECTIVES), rng.pick(PLACES)),
        5 => format!("A {} in {}", rng.pick(NOUNS), rng.pick(PLACES)),
        6 => rng.pick(NATIVE_TITLES).to_owned(),
        7 => format!("{} and the {}", rng.pick(FIRST_NAMES), rng.pick(NOUNS)),
        8 => format!("The {} Files", rng.pick(NOUNS)),
        _ => format!("{} {}", rng.pick(NOUNS), rng.pick(NOUNS)),
    }
}

fn synopsis(rng: &mut SplitMix64) -> String {
    rng.pick(PLOTS)
        .replace("{job}", rng.pick(JOBS))
        .replace("{place}", rng.pick(PLACES))
        .replace("{noun}", &rng.pick(NOUNS).to_lowercase())
}

/// The seed films, in id order. Titles are made unique with a sequel number.
pub(crate) fn films() -> Vec<MovieFields> {
    let mut rng = SplitMix64(0x5eed_f11e_2026);
    let mut seen = std::collections::HashMap::<String, u32>::new();
    (1..=SEED_FILMS)
        .map(|index| {
            let base = title(&mut rng);
            let count = seen.entry(base.clone()).or_insert(0);
            *count += 1;
            let title = if *count == 1 { base } else { format!("{base} {}", *count) };
            let genre_count = 1 + rng.below(3);
            let mut genres: Vec<String> = Vec::new();
            while genres.len() < genre_count {
                let genre = rng.pick(GENRES).to_owned();
                if !genres.contains(&genre) {
                    genres.push(genre);
                }
            }
            MovieFields {
                title,
                release_year: 1950 + rng.below(76) as i32,
                genres,
                runtime_minutes: 78 + rng.below(110) as i32,
                director: format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES)),
                rating: Rating(1 + rng.below(5) as i32),
                synopsis: synopsis(&mut rng),
                audience_rating: (20 + rng.below(81)) as f32 / 10.0,
                external_key: Some(format!("seed-{index:04}")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_deterministic_and_valid() {
        let first = films();
        assert_eq!(first, films());
        assert_eq!(first.len(), SEED_FILMS);
        let now = std::time::SystemTime::now();
        for film in &first {
            let raw = crate::domain::RawMovie {
                title: film.title.clone(),
                release_year: film.release_year,
                genres: film.genres.clone(),
                runtime_minutes: film.runtime_minutes,
                director: film.director.clone(),
                rating: film.rating.0,
                synopsis: film.synopsis.clone(),
                audience_rating: film.audience_rating,
                external_key: film.external_key.clone().unwrap_or_default(),
            };
            assert_eq!(&raw.validate(now).unwrap(), film);
        }
        let titles: std::collections::HashSet<_> = first.iter().map(|f| &f.title).collect();
        assert_eq!(titles.len(), SEED_FILMS, "titles are unique");
    }
}
