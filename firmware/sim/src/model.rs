//! The environment the simulated sensors measure: deterministic functions of (seed, post, time).
//!
//! Air: winter heating-season smog with night inversions (strongest in the north-east's
//! private-house districts), weekday traffic peaks for NO2 (08-10 and 18-20 Almaty time), an
//! LEZ that cuts traffic NO2 inside it after its start date, an annual and daily temperature
//! cycle with the lapse rate for the post's height, humidity with winter fog nights.
//! Rivers: snow-melt floods from April to June with an afternoon melt peak, and one sudden
//! mudflow-like surge on Киши Алматы (a scenario event). Faults and network outages are drawn
//! per post and day from the seed.

use protocol::UnixSeconds;

use crate::fleet::{LowEmissionZone, PostDescriptor, PostKind, KISHI};

/// Almaty is UTC+5 (no DST since 2024).
pub const ALMATY_UTC_OFFSET_S: i64 = 5 * 3600;
const DAY_S: i64 = 86_400;

/// True air state at a post.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AirTruth {
    /// PM2.5 a reference monitor would read, µg/m³.
    pub pm2_5_ug_m3: f64,
    /// PM10, µg/m³.
    pub pm10_ug_m3: f64,
    /// PM1, µg/m³.
    pub pm1_ug_m3: f64,
    /// NO2, µg/m³.
    pub no2_ug_m3: f64,
    /// Air temperature, °C.
    pub temperature_c: f64,
    /// Relative humidity, %.
    pub humidity_pct: f64,
    /// Air pressure, Pa.
    pub pressure_pa: f64,
}

/// True river state at a post.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiverTruth {
    /// cm above the gauge zero.
    pub level_cm: f64,
    /// °C.
    pub water_temperature_c: f64,
    /// µS/cm.
    pub conductivity_us_cm: f64,
    /// NTU.
    pub turbidity_ntu: f64,
    /// mg/L.
    pub dissolved_oxygen_mg_l: f64,
    /// pH.
    pub ph: f64,
}

/// A sensor misbehaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Working.
    None,
    /// The sensor does not answer (I²C NACK, UART silent).
    NotAnswering,
    /// The sensor repeats its last value.
    Stuck,
}

/// The deterministic world.
#[derive(Debug, Clone)]
pub struct Model {
    seed: u64,
    lez: LowEmissionZone,
    /// Start of the mudflow surge on Киши Алматы, if any.
    pub mudflow_at: Option<UnixSeconds>,
    /// Random faults and outages on or off.
    pub faults: bool,
}

/// SplitMix64: a tiny, well-mixed hash for deterministic noise.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from the hash of the inputs.
pub fn unit(seed: u64, a: u64, b: u64, c: u64) -> f64 {
    let h = mix(seed ^ mix(a ^ mix(b ^ mix(c))));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn smooth_bump(x: f64, centre: f64, width: f64) -> f64 {
    let d = (x - centre) / width;
    (-d * d).exp()
}

/// Hash of a post id, for per-post randomness.
pub fn post_key(p: &PostDescriptor) -> u64 {
    p.id.as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

impl Model {
    /// A world for `seed`.
    pub fn new(
        seed: u64,
        lez: LowEmissionZone,
        mudflow_at: Option<UnixSeconds>,
        faults: bool,
    ) -> Self {
        Self {
            seed,
            lez,
            mudflow_at,
            faults,
        }
    }

    /// Local hour of day (0..24, fractional), day of year (0..365), weekday (0 = Monday).
    fn calendar(t: UnixSeconds) -> (f64, f64, i64) {
        let local = t.0 + ALMATY_UTC_OFFSET_S;
        let hour = local.rem_euclid(DAY_S) as f64 / 3600.0;
        let day = local.div_euclid(DAY_S);
        // 1970-01-01 was a Thursday (3 if Monday = 0).
        let weekday = (day + 3).rem_euclid(7);
        let doy = (local.rem_euclid(31_556_952) as f64) / DAY_S as f64;
        (hour, doy, weekday)
    }

    /// Heating season strength 0..1: full from December to February, none from mid-April to
    /// mid-October (Almaty's heating season is 15 Oct - 15 Apr).
    fn heating(doy: f64) -> f64 {
        // Cosine peaking mid-January (doy 15), clipped.
        let c = ((doy - 15.0) / 365.25 * std::f64::consts::TAU).cos();
        ((c - 0.1) / 0.6).clamp(0.0, 1.0)
    }

    /// Noise with mean 1 and spread `rel`, changing every `period_s`.
    fn wobble(&self, key: u64, channel: u64, t: UnixSeconds, period_s: i64, rel: f64) -> f64 {
        let slot = t.0.div_euclid(period_s) as u64;
        1.0 + rel * (2.0 * unit(self.seed, key, channel, slot) - 1.0)
    }

    /// The air at `post` at `t`.
    pub fn air(&self, post: &PostDescriptor, t: UnixSeconds) -> AirTruth {
        let key = post_key(post);
        let (hour, doy, weekday) = Self::calendar(t);
        let heating = Self::heating(doy);
        let day_key = t.0.div_euclid(DAY_S) as u64;
        // Night inversion: strongest 22-07 local, stronger on calm days (drawn per day).
        let night = smooth_bump(hour, 2.0, 4.5)
            + smooth_bump(hour, 26.0, 4.5)
            + smooth_bump(hour, -22.0, 4.5);
        let calm = 0.5 + unit(self.seed, 17, day_key, 0);
        // 0.8: the worst calm winter midnight in the north-east stays near 450 µg/m³ PM2.5
        // (Almaty's worst hours); at 1.8 it went past the PMS5003's 1000 µg/m³ ceiling, which
        // made commissioning at local midnight fail on a healthy simulated post.
        let inversion = 1.0 + 0.8 * heating * night * calm;
        let district = match post.district {
            "Турксибский" | "Жетысуский" | "Алатауский" => 1.45,
            "Медеуский" if post.elevation_m > 950.0 => 0.6,
            "Наурызбайский" => 0.9,
            _ => 1.0,
        };
        let pm2_5 =
            (9.0 + 75.0 * heating * district) * inversion * self.wobble(key, 1, t, 600, 0.15);
        let dust = 10.0 + 15.0 * (1.0 - heating);
        let pm10 = pm2_5 * 1.45 + dust * self.wobble(key, 2, t, 900, 0.3);
        let pm1 = pm2_5 * 0.72;
        // Traffic: weekday peaks, weekends lighter.
        let peaks = smooth_bump(hour, 8.7, 1.2) + 0.9 * smooth_bump(hour, 18.8, 1.5) + 0.35;
        let weekday_factor = if weekday >= 5 { 0.6 } else { 1.0 };
        let central = if post.in_lez { 1.25 } else { 1.0 };
        let lez = if post.in_lez && t >= self.lez.start {
            0.7
        } else {
            1.0
        };
        let traffic = 55.0 * peaks * weekday_factor * central * lez;
        let no2 =
            (12.0 + traffic) * (1.0 + 0.35 * heating * night) * self.wobble(key, 3, t, 300, 0.12);
        // Temperature: annual mean 10 °C ±15, coldest mid-January; daily ±5 peaking 15:00.
        let annual = 10.0 - 15.5 * ((doy - 15.0) / 365.25 * std::f64::consts::TAU).cos();
        let diurnal = 5.0 * ((hour - 15.0) / 24.0 * std::f64::consts::TAU).cos();
        let lapse = -6.5 * (post.elevation_m - 800.0) / 1000.0;
        let temperature_c =
            annual + diurnal + lapse + 1.5 * (2.0 * unit(self.seed, 5, day_key, 0) - 1.0);
        // Humidity: winter 75 %, summer 45 %, +15 at night; some winter nights bring fog.
        let fog = heating > 0.5 && unit(self.seed, 23, day_key, 0) < 0.2;
        let mut humidity = 45.0 + 30.0 * heating + 15.0 * (night / 1.0).min(1.0);
        if fog && night > 0.5 {
            humidity = 97.5;
        }
        let humidity_pct = (humidity * self.wobble(key, 4, t, 600, 0.03)).min(100.0);
        // Barometric formula for the post's height, plus weather.
        let standard = 101_325.0 * (1.0 - 2.255_77e-5 * post.elevation_m).powf(5.255_88);
        let pressure_pa = standard + 600.0 * (2.0 * unit(self.seed, 7, day_key, 0) - 1.0);
        AirTruth {
            pm2_5_ug_m3: pm2_5,
            pm10_ug_m3: pm10,
            pm1_ug_m3: pm1,
            no2_ug_m3: no2,
            temperature_c,
            humidity_pct,
            pressure_pa,
        }
    }

    /// The river at `post` at `t`.
    pub fn river(&self, post: &PostDescriptor, t: UnixSeconds) -> RiverTruth {
        let key = post_key(post);
        let (hour, doy, _) = Self::calendar(t);
        let base = match post.river {
            Some(r) if r == KISHI => 55.0,
            Some(r) if r.starts_with("Есентай") => 35.0,
            _ => 75.0,
        };
        // Snow-melt flood: April-June, peak late May; afternoon melt peak (arrives ~17:00).
        let melt = smooth_bump(doy, 145.0, 28.0);
        let daily = 0.5 + 0.5 * ((hour - 17.0) / 24.0 * std::f64::consts::TAU).cos();
        let rain_day = unit(self.seed, key, 31, t.0.div_euclid(DAY_S) as u64) < 0.08 && melt > 0.1;
        let mut level = base * (1.0 + 1.2 * melt + 0.35 * melt * daily)
            + if rain_day { 25.0 * daily } else { 0.0 };
        let mut mud = 0.0;
        if let (Some(m), Some(KISHI)) = (self.mudflow_at, post.river) {
            let dt_h = (t.0 - m.0) as f64 / 3600.0;
            if dt_h >= 0.0 {
                // A surge: +170 cm within 20 minutes, decaying over ~6 hours.
                let rise = (dt_h / 0.33).min(1.0);
                mud = rise * (-dt_h / 6.0).exp();
                level += 170.0 * mud;
            }
        }
        level *= self.wobble(key, 8, t, 300, 0.01);
        let water_temperature_c = 2.0 + 7.0 * smooth_bump(doy, 210.0, 60.0) + 1.0 * daily;
        let flood = (melt + mud).min(1.5);
        let conductivity_us_cm = (380.0 - 140.0 * flood) * self.wobble(key, 9, t, 600, 0.04);
        let turbidity_ntu =
            (4.0 + 60.0 * melt * daily + 900.0 * mud) * self.wobble(key, 10, t, 600, 0.1);
        // Saturation DO (Benson-Krause approximation) at the post's height, slightly below.
        let sat = 14.62 - 0.3898 * water_temperature_c + 0.006_969 * water_temperature_c.powi(2);
        let altitude = (1.0 - 2.255_77e-5 * post.elevation_m).powf(5.255_88);
        let dissolved_oxygen_mg_l = sat * altitude * 0.95 * self.wobble(key, 11, t, 600, 0.01);
        let ph = 7.8 + 0.2 * (1.0 - flood) * self.wobble(key, 12, t, 600, 0.01);
        RiverTruth {
            level_cm: level,
            water_temperature_c,
            conductivity_us_cm,
            turbidity_ntu,
            dissolved_oxygen_mg_l,
            ph,
        }
    }

    /// Whether `sensor` (0, 1, 2 on a post) is faulty at `t`: about one day in 25 a sensor has
    /// a 1-4 hour fault, half of them silent, half stuck.
    pub fn fault(&self, post: &PostDescriptor, sensor: u64, t: UnixSeconds) -> Fault {
        if !self.faults {
            return Fault::None;
        }
        let day = t.0.div_euclid(DAY_S);
        let k = post_key(post);
        if unit(self.seed, k, 100 + sensor, day as u64) >= 0.04 {
            return Fault::None;
        }
        let start =
            day * DAY_S + (unit(self.seed, k, 200 + sensor, day as u64) * 20.0 * 3600.0) as i64;
        let len = 3600 + (unit(self.seed, k, 300 + sensor, day as u64) * 3.0 * 3600.0) as i64;
        if (start..start + len).contains(&t.0) {
            if unit(self.seed, k, 400 + sensor, day as u64) < 0.5 {
                Fault::NotAnswering
            } else {
                Fault::Stuck
            }
        } else {
            Fault::None
        }
    }

    /// Whether `post`'s network is down at `t` from the seed: about one day in 20, a 10-90
    /// minute outage.
    pub fn random_outage(&self, post: &PostDescriptor, t: UnixSeconds) -> bool {
        if !self.faults {
            return false;
        }
        let day = t.0.div_euclid(DAY_S);
        let k = post_key(post);
        if unit(self.seed, k, 500, day as u64) >= 0.05 {
            return false;
        }
        let start = day * DAY_S + (unit(self.seed, k, 501, day as u64) * 22.0 * 3600.0) as i64;
        let len = 600 + (unit(self.seed, k, 502, day as u64) * 80.0 * 60.0) as i64;
        (start..start + len).contains(&t.0)
    }

    /// Whether `post`'s kind is air.
    pub fn is_air(post: &PostDescriptor) -> bool {
        post.kind == PostKind::Air
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;

    fn post(f: &Fleet, id: &str) -> PostDescriptor {
        f.posts()
            .iter()
            .find(|p| p.id.as_str() == id)
            .unwrap()
            .clone()
    }

    #[test]
    fn winter_nights_in_the_north_east_are_far_smokier_than_summer_days() {
        let f = Fleet::default_almaty(7);
        let m = Model::new(7, f.lez, None, false);
        let turksib = post(&f, "almaty-air-15");
        // 2026-01-15 02:00 local = 2026-01-14T21:00Z; 2026-07-15 14:00 local = 09:00Z.
        let winter_night = m.air(&turksib, UnixSeconds(1_768_424_400));
        let summer_day = m.air(&turksib, UnixSeconds(1_784_106_000));
        assert!(
            winter_night.pm2_5_ug_m3 > 3.0 * summer_day.pm2_5_ug_m3,
            "{winter_night:?} {summer_day:?}"
        );
        assert!(winter_night.temperature_c < summer_day.temperature_c - 15.0);
    }

    #[test]
    fn lez_lowers_no2_inside_after_its_start() {
        let f = Fleet::default_almaty(7);
        let m = Model::new(7, f.lez, None, false);
        let inside = post(&f, "almaty-air-01");
        assert!(inside.in_lez);
        // Same weekday and hour (Tuesday 08:40 local), a week before and after the start.
        let before = UnixSeconds(f.lez.start.0 - 7 * DAY_S + 3 * DAY_S + 8 * 3600 + 2400);
        let after = UnixSeconds(before.0 + 14 * DAY_S);
        assert!(m.air(&inside, after).no2_ug_m3 < 0.85 * m.air(&inside, before).no2_ug_m3);
    }

    #[test]
    fn mudflow_raises_kishi_almaty_by_more_than_a_metre_within_half_an_hour() {
        let f = Fleet::default_almaty(7);
        let at = UnixSeconds(1_784_106_000);
        let m = Model::new(7, f.lez, Some(at), false);
        let kishi = post(&f, "river-kishi-02");
        let rise =
            m.river(&kishi, at.offset(1800)).level_cm - m.river(&kishi, at.offset(-60)).level_cm;
        assert!(rise > 100.0, "{rise}");
    }
}
