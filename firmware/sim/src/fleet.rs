//! The simulated fleet: posts at real Almaty locations (all eight districts, more in the
//! polluted north-east), some inside a central low-emission zone, and river posts on Улкен
//! Алматы, Киши Алматы and Есентай. This is also what the gateway registers for `--demo`.

use protocol::{PostId, Quantity, UnixSeconds};

/// Air or river post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostKind {
    /// PM1/PM2.5/PM10 (PMS5003), NO2 (B43F on ADS1115), temperature and humidity (SHT3x).
    Air,
    /// Water level, temperature, conductivity, turbidity, dissolved oxygen, pH (4-20 mA probes
    /// on two ADS1115).
    River,
}

/// Quantities an air post reports.
pub const AIR_QUANTITIES: [Quantity; 6] = [
    Quantity::Pm1,
    Quantity::Pm2_5,
    Quantity::Pm10,
    Quantity::No2,
    Quantity::Temperature,
    Quantity::Humidity,
];
/// Quantities a river post reports.
pub const RIVER_QUANTITIES: [Quantity; 6] = [
    Quantity::WaterLevel,
    Quantity::WaterTemperature,
    Quantity::Conductivity,
    Quantity::Turbidity,
    Quantity::DissolvedOxygen,
    Quantity::Ph,
];

/// What the gateway needs to register a post.
#[derive(Debug, Clone, PartialEq)]
pub struct PostDescriptor {
    /// Post id (topic segment and SenML base name).
    pub id: PostId,
    /// Air or river.
    pub kind: PostKind,
    /// Human name (Russian), e.g. "Абая / Назарбаева".
    pub name: &'static str,
    /// District (Russian name), e.g. "Алмалинский".
    pub district: &'static str,
    /// River name for river posts (Kazakh name, Russian in brackets).
    pub river: Option<&'static str>,
    /// Latitude, degrees north (WGS 84).
    pub lat: f64,
    /// Longitude, degrees east (WGS 84).
    pub lon: f64,
    /// Height above sea level, m.
    pub elevation_m: f64,
    /// Inside the central low-emission zone.
    pub in_lez: bool,
    /// Quantities reported.
    pub quantities: &'static [Quantity],
    /// Sensor models on the post.
    pub sensors: &'static [&'static str],
    /// Critical water level at the gauge, cm (river posts).
    pub critical_level_cm: Option<f64>,
}

/// The eight districts of Almaty (Russian names).
pub const DISTRICTS: [&str; 8] = [
    "Алатауский",
    "Алмалинский",
    "Ауэзовский",
    "Бостандыкский",
    "Жетысуский",
    "Медеуский",
    "Наурызбайский",
    "Турксибский",
];

/// The central low-emission zone: a box around the historic centre (Raiymbek avenue to
/// Al-Farabi, Baizakov to Dostyk). An assumption for the demo: the city has announced LEZ plans,
/// its final boundary is not in the seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowEmissionZone {
    /// Southern edge, degrees.
    pub lat_min: f64,
    /// Northern edge, degrees.
    pub lat_max: f64,
    /// Western edge, degrees.
    pub lon_min: f64,
    /// Eastern edge, degrees.
    pub lon_max: f64,
    /// When the zone starts applying to vehicles.
    pub start: UnixSeconds,
}

impl LowEmissionZone {
    /// Whether (lat, lon) is inside.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        (self.lat_min..=self.lat_max).contains(&lat) && (self.lon_min..=self.lon_max).contains(&lon)
    }
}

/// A fleet of posts and the seed all behaviour derives from.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Seed of every random choice (noise, faults, outages).
    pub seed: u64,
    /// The central low-emission zone.
    pub lez: LowEmissionZone,
    posts: Vec<PostDescriptor>,
}

const AIR_SENSORS: &[&str] = &["pms5003", "sht3x", "no2-b43f"];
const RIVER_SENSORS: &[&str] = &[
    "level-4-20ma",
    "water-temp-4-20ma",
    "conductivity",
    "turbidity",
    "do",
    "ph",
];

type Row = (&'static str, &'static str, &'static str, f64, f64, f64);

/// (id, name, district, lat, lon, elevation m).
const AIR_POSTS: [Row; 18] = [
    (
        "almaty-air-01",
        "Абая / Назарбаева",
        "Алмалинский",
        43.2398,
        76.9457,
        810.0,
    ),
    (
        "almaty-air-02",
        "Толе би / Байзакова",
        "Алмалинский",
        43.2524,
        76.9084,
        800.0,
    ),
    (
        "almaty-air-03",
        "Панфилова / Жибек Жолы",
        "Медеуский",
        43.2588,
        76.9436,
        780.0,
    ),
    (
        "almaty-air-04",
        "Достык / Абая",
        "Медеуский",
        43.2405,
        76.9573,
        840.0,
    ),
    (
        "almaty-air-05",
        "Горный Гигант",
        "Медеуский",
        43.2167,
        76.9870,
        1000.0,
    ),
    (
        "almaty-air-06",
        "Аль-Фараби / Розыбакиева",
        "Бостандыкский",
        43.2105,
        76.8986,
        900.0,
    ),
    (
        "almaty-air-07",
        "Тимирязева / Жандосова",
        "Бостандыкский",
        43.2256,
        76.9080,
        860.0,
    ),
    (
        "almaty-air-08",
        "Саина / Абая",
        "Ауэзовский",
        43.2330,
        76.8480,
        760.0,
    ),
    (
        "almaty-air-09",
        "мкр. Аксай-4",
        "Ауэзовский",
        43.2296,
        76.8280,
        770.0,
    ),
    (
        "almaty-air-10",
        "Рыскулова / Саина",
        "Алатауский",
        43.2780,
        76.8470,
        700.0,
    ),
    (
        "almaty-air-11",
        "мкр. Шанырак",
        "Алатауский",
        43.3160,
        76.8290,
        690.0,
    ),
    (
        "almaty-air-12",
        "Сейфуллина / Рыскулова",
        "Жетысуский",
        43.2760,
        76.9330,
        720.0,
    ),
    (
        "almaty-air-13",
        "мкр. Кокжиек",
        "Жетысуский",
        43.3110,
        76.9610,
        680.0,
    ),
    (
        "almaty-air-14",
        "Бекмаханова / Суюнбая",
        "Турксибский",
        43.2985,
        76.9605,
        700.0,
    ),
    (
        "almaty-air-15",
        "мкр. Жулдыз",
        "Турксибский",
        43.3330,
        76.9930,
        660.0,
    ),
    (
        "almaty-air-16",
        "Майлина (аэропорт)",
        "Турксибский",
        43.3420,
        77.0110,
        680.0,
    ),
    (
        "almaty-air-17",
        "мкр. Шугыла",
        "Наурызбайский",
        43.2060,
        76.8060,
        900.0,
    ),
    (
        "almaty-air-18",
        "Каменка",
        "Наурызбайский",
        43.1850,
        76.8450,
        1050.0,
    ),
];

/// (id, name, district, lat, lon, elevation m), river, critical level cm.
const RIVER_POSTS: [(Row, &str, f64); 5] = [
    (
        (
            "river-ulken-01",
            "Улкен Алматы, Аль-Фараби",
            "Бостандыкский",
            43.2058,
            76.8916,
            900.0,
        ),
        ULKEN,
        220.0,
    ),
    (
        (
            "river-ulken-02",
            "Улкен Алматы, Рыскулова",
            "Алатауский",
            43.2824,
            76.8839,
            700.0,
        ),
        ULKEN,
        240.0,
    ),
    (
        (
            "river-kishi-01",
            "Киши Алматы, Медеу",
            "Медеуский",
            43.1578,
            77.0584,
            1680.0,
        ),
        KISHI,
        136.0,
    ),
    (
        (
            "river-kishi-02",
            "Киши Алматы, Абая",
            "Медеуский",
            43.2395,
            76.9620,
            840.0,
        ),
        KISHI,
        180.0,
    ),
    (
        (
            "river-esentai-01",
            "Есентай, Аль-Фараби",
            "Бостандыкский",
            43.2035,
            76.9265,
            950.0,
        ),
        ESENTAI,
        150.0,
    ),
];

/// Улкен Алматы (Большая Алматинка).
pub const ULKEN: &str = "Улкен Алматы (Большая Алматинка)";
/// Киши Алматы (Малая Алматинка); the river of the mudflow scenario.
pub const KISHI: &str = "Киши Алматы (Малая Алматинка)";
/// Есентай (Весновка).
pub const ESENTAI: &str = "Есентай (Весновка)";

impl Fleet {
    /// The default Almaty fleet: 18 air posts and 5 river posts.
    pub fn default_almaty(seed: u64) -> Self {
        let lez = LowEmissionZone {
            lat_min: 43.225,
            lat_max: 43.265,
            lon_min: 76.89,
            lon_max: 76.96,
            // 2026-03-01T00:00:00+05:00: an assumed start date for the demo.
            start: UnixSeconds(1_772_305_200),
        };
        let mut posts = Vec::new();
        for (id, name, district, lat, lon, elevation_m) in AIR_POSTS {
            if let Ok(id) = PostId::parse(id) {
                posts.push(PostDescriptor {
                    id,
                    kind: PostKind::Air,
                    name,
                    district,
                    river: None,
                    lat,
                    lon,
                    elevation_m,
                    in_lez: lez.contains(lat, lon),
                    quantities: &AIR_QUANTITIES,
                    sensors: AIR_SENSORS,
                    critical_level_cm: None,
                });
            }
        }
        for ((id, name, district, lat, lon, elevation_m), river, critical) in RIVER_POSTS {
            if let Ok(id) = PostId::parse(id) {
                posts.push(PostDescriptor {
                    id,
                    kind: PostKind::River,
                    name,
                    district,
                    river: Some(river),
                    lat,
                    lon,
                    elevation_m,
                    in_lez: false,
                    quantities: &RIVER_QUANTITIES,
                    sensors: RIVER_SENSORS,
                    critical_level_cm: Some(critical),
                });
            }
        }
        Self { seed, lez, posts }
    }

    /// The posts.
    pub fn posts(&self) -> &[PostDescriptor] {
        &self.posts
    }

    /// Keeps `air` air posts and `river` river posts (in list order: the first air posts are
    /// central, so small fleets still have LEZ posts).
    pub fn limit(mut self, air: usize, river: usize) -> Self {
        let (mut a, mut r) = (0, 0);
        self.posts.retain(|p| match p.kind {
            PostKind::Air => {
                a += 1;
                a <= air
            }
            PostKind::River => {
                r += 1;
                r <= river
            }
        });
        self
    }

    /// Keeps only the posts `keep` accepts.
    pub fn retain(mut self, keep: impl Fn(&PostDescriptor) -> bool) -> Self {
        self.posts.retain(|p| keep(p));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_fleet_covers_all_districts_the_three_rivers_and_both_sides_of_the_lez() {
        let f = Fleet::default_almaty(1);
        for d in DISTRICTS {
            assert!(f.posts().iter().any(|p| p.district == d), "{d}");
        }
        for r in [ULKEN, KISHI, ESENTAI] {
            assert!(f.posts().iter().any(|p| p.river == Some(r)), "{r}");
        }
        let air: Vec<_> = f
            .posts()
            .iter()
            .filter(|p| p.kind == PostKind::Air)
            .collect();
        assert!(air.iter().any(|p| p.in_lez) && air.iter().any(|p| !p.in_lez));
        let north_east = air
            .iter()
            .filter(|p| matches!(p.district, "Турксибский" | "Жетысуский"))
            .count();
        assert!(north_east >= 5, "more posts where pollution is worst");
    }
}
