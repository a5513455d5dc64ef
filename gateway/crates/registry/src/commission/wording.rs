//! What a commissioning check says, in Russian (the default: the technicians' working
//! language), Kazakh and English. One table per language, as for alert notifications; the
//! Kazakh wording is ours and wants a native speaker's review.

use serde::Deserialize;

/// Report language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Русский.
    #[default]
    Ru,
    /// Қазақша.
    Kk,
    /// English.
    En,
}

impl Lang {
    /// `ru`, `kk` or `en`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ru" => Some(Self::Ru),
            "kk" => Some(Self::Kk),
            "en" => Some(Self::En),
            _ => None,
        }
    }
}

/// What a check found; numbers already formatted for people.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    Online {
        firmware: String,
        at: String,
    },
    NoFirmware,
    Offline,
    NoStatus,
    ConfigCurrent {
        hash: String,
    },
    ConfigOutdated {
        reported: String,
        desired: String,
    },
    NoConfigHash,
    ClockOk {
        offset_s: f64,
    },
    ClockOff {
        offset_s: f64,
    },
    NoClock,
    Signal {
        dbm: i16,
    },
    NoSignal,
    Supply {
        volts: f64,
    },
    SupplyOutOfRange {
        volts: f64,
        min: f64,
        max: f64,
        source: String,
    },
    NoSupply,
    NoReading {
        waited_s: i64,
        cadence_s: u64,
    },
    Implausible {
        value: String,
        unit: &'static str,
        min: f64,
        max: f64,
        source: String,
    },
    WarmingUp {
        value: String,
        unit: &'static str,
    },
    Flagged {
        value: String,
        unit: &'static str,
        flags: String,
    },
    Reading {
        value: String,
        unit: &'static str,
        at: String,
        count: u32,
    },
}

/// Words around the checks: verdict line, started / finished.
pub fn span(lang: Lang, started: &str, finished: &str) -> String {
    match lang {
        Lang::Ru => format!("начало {started}, конец {finished}"),
        Lang::Kk => format!("басталды {started}, аяқталды {finished}"),
        Lang::En => format!("started {started}, finished {finished}"),
    }
}

fn signal_quality(lang: Lang, dbm: i16) -> &'static str {
    match (lang, dbm) {
        (Lang::Ru, d) if d >= -85 => "хороший",
        (Lang::Ru, d) if d >= -100 => "средний",
        (Lang::Ru, _) => "слабый: поправьте антенну",
        (Lang::Kk, d) if d >= -85 => "жақсы",
        (Lang::Kk, d) if d >= -100 => "орташа",
        (Lang::Kk, _) => "әлсіз: антеннаны түзетіңіз",
        (Lang::En, d) if d >= -85 => "good",
        (Lang::En, d) if d >= -100 => "fair",
        (Lang::En, _) => "weak: consider the antenna position",
    }
}

impl Finding {
    /// The sentence in `lang`.
    pub fn say(&self, lang: Lang) -> String {
        match lang {
            Lang::Ru => self.ru(),
            Lang::Kk => self.kk(),
            Lang::En => self.en(),
        }
    }

    fn en(&self) -> String {
        match self {
            Self::Online { firmware, at } => format!("online, firmware {firmware}, last status {at}"),
            Self::NoFirmware => "online but reports no firmware version".into(),
            Self::Offline => "offline (the broker published its last will): check power and the modem".into(),
            Self::NoStatus => "no status message yet: is the post powered and provisioned with this broker?".into(),
            Self::ConfigCurrent { hash } => format!("runs the registry's config {hash}"),
            Self::ConfigOutdated { reported, desired } => format!(
                "runs config {reported}, the registry wants {desired} (not applied yet, or the post refused it)"
            ),
            Self::NoConfigHash => "reports no config hash".into(),
            Self::ClockOk { offset_s } => format!("offset {offset_s:+.2} s (limit 2 s)"),
            Self::ClockOff { offset_s } => format!(
                "offset {offset_s:+.2} s, over the 2 s limit: the post's time source (NTP / network time) is wrong"
            ),
            Self::NoClock => "no live status with the post's clock yet".into(),
            Self::Signal { dbm } => format!("{dbm} dBm ({})", signal_quality(Lang::En, *dbm)),
            Self::NoSignal => "signal strength not reported".into(),
            Self::Supply { volts } => format!("{volts:.2} V"),
            Self::SupplyOutOfRange { volts, min, max, source } => {
                format!("{volts:.2} V, outside {min}–{max} V ({source})")
            }
            Self::NoSupply => "supply voltage not reported".into(),
            Self::NoReading { waited_s, cadence_s } => format!(
                "no reading in {waited_s} s (cadence {cadence_s} s): sensor silent, unplugged or not detected at boot"
            ),
            Self::Implausible { value, unit, min, max, source } => {
                format!("{value} {unit} is outside the plausible {min}–{max} {unit} ({source})")
            }
            Self::WarmingUp { value, unit } => format!(
                "{value} {unit}, still warming up: wait for the warm-up to end and commission again"
            ),
            Self::Flagged { value, unit, flags } => {
                format!("{value} {unit} flagged {flags}: the post marks its own reading invalid")
            }
            Self::Reading { value, unit, at, count } => {
                format!("{value} {unit} at {at} ({count} readings)")
            }
        }
    }

    fn ru(&self) -> String {
        match self {
            Self::Online { firmware, at } => format!("на связи, прошивка {firmware}, последний статус {at}"),
            Self::NoFirmware => "на связи, но не сообщает версию прошивки".into(),
            Self::Offline => "не на связи (брокер опубликовал его «последнюю волю»): проверьте питание и модем".into(),
            Self::NoStatus => "статуса ещё не было: пост включён и прошит конфигурацией этого брокера?".into(),
            Self::ConfigCurrent { hash } => format!("работает с конфигурацией реестра {hash}"),
            Self::ConfigOutdated { reported, desired } => format!(
                "работает с конфигурацией {reported}, реестр требует {desired} (ещё не применена или пост её отверг)"
            ),
            Self::NoConfigHash => "не сообщает хеш конфигурации".into(),
            Self::ClockOk { offset_s } => format!("расхождение {offset_s:+.2} с (допуск 2 с)"),
            Self::ClockOff { offset_s } => format!(
                "расхождение {offset_s:+.2} с, больше допуска 2 с: неверен источник времени поста (NTP / время сети)"
            ),
            Self::NoClock => "ещё нет живого статуса с часами поста".into(),
            Self::Signal { dbm } => format!("{dbm} дБм ({})", signal_quality(Lang::Ru, *dbm)),
            Self::NoSignal => "уровень сигнала не сообщается".into(),
            Self::Supply { volts } => format!("{volts:.2} В"),
            Self::SupplyOutOfRange { volts, min, max, source } => {
                format!("{volts:.2} В, вне {min}–{max} В ({source})")
            }
            Self::NoSupply => "напряжение питания не сообщается".into(),
            Self::NoReading { waited_s, cadence_s } => format!(
                "нет показаний за {waited_s} с (период {cadence_s} с): датчик молчит, не подключён или не найден при загрузке"
            ),
            Self::Implausible { value, unit, min, max, source } => {
                format!("{value} {unit} вне правдоподобного диапазона {min}–{max} {unit} ({source})")
            }
            Self::WarmingUp { value, unit } => format!(
                "{value} {unit}, датчик ещё прогревается: дождитесь конца прогрева и повторите проверку"
            ),
            Self::Flagged { value, unit, flags } => {
                format!("{value} {unit} с флагами {flags}: пост сам помечает показание недостоверным")
            }
            Self::Reading { value, unit, at, count } => {
                format!("{value} {unit} в {at} (показаний: {count})")
            }
        }
    }

    fn kk(&self) -> String {
        match self {
            Self::Online { firmware, at } => format!("байланыста, микробағдарлама {firmware}, соңғы күй {at}"),
            Self::NoFirmware => "байланыста, бірақ микробағдарлама нұсқасын хабарламайды".into(),
            Self::Offline => "байланыста емес (брокер оның «соңғы өсиетін» жариялады): қорек пен модемді тексеріңіз".into(),
            Self::NoStatus => "күй хабары әлі жоқ: пост қосулы ма және осы брокердің конфигурациясымен жазылды ма?".into(),
            Self::ConfigCurrent { hash } => format!("тізілімнің {hash} конфигурациясымен жұмыс істейді"),
            Self::ConfigOutdated { reported, desired } => format!(
                "{reported} конфигурациясымен жұмыс істейді, тізілім {desired} талап етеді (әлі қолданылмаған немесе пост қабылдамаған)"
            ),
            Self::NoConfigHash => "конфигурация хешін хабарламайды".into(),
            Self::ClockOk { offset_s } => format!("айырма {offset_s:+.2} с (шегі 2 с)"),
            Self::ClockOff { offset_s } => format!(
                "айырма {offset_s:+.2} с, 2 с шегінен асады: посттың уақыт көзі (NTP / желі уақыты) қате"
            ),
            Self::NoClock => "посттың сағаты бар тірі күй әлі жоқ".into(),
            Self::Signal { dbm } => format!("{dbm} дБм ({})", signal_quality(Lang::Kk, *dbm)),
            Self::NoSignal => "сигнал деңгейі хабарланбайды".into(),
            Self::Supply { volts } => format!("{volts:.2} В"),
            Self::SupplyOutOfRange { volts, min, max, source } => {
                format!("{volts:.2} В, {min}–{max} В шегінен тыс ({source})")
            }
            Self::NoSupply => "қорек кернеуі хабарланбайды".into(),
            Self::NoReading { waited_s, cadence_s } => format!(
                "{waited_s} с ішінде көрсеткіш жоқ (кезеңі {cadence_s} с): датчик үнсіз, қосылмаған немесе жүктелгенде табылмаған"
            ),
            Self::Implausible { value, unit, min, max, source } => {
                format!("{value} {unit} сенімді {min}–{max} {unit} аралығынан тыс ({source})")
            }
            Self::WarmingUp { value, unit } => format!(
                "{value} {unit}, датчик әлі қызып жатыр: қызу біткенше күтіп, тексерісті қайталаңыз"
            ),
            Self::Flagged { value, unit, flags } => {
                format!("{value} {unit}, белгілері {flags}: пост көрсеткішті өзі жарамсыз деп белгілейді")
            }
            Self::Reading { value, unit, at, count } => {
                format!("{value} {unit}, {at} (көрсеткіштер саны: {count})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finding_is_said_in_each_language_with_its_numbers() {
        let findings = [
            Finding::ClockOff { offset_s: 3.5 },
            Finding::NoReading {
                waited_s: 130,
                cadence_s: 60,
            },
            Finding::Implausible {
                value: "5000".into(),
                unit: "ug/m3",
                min: -50.0,
                max: 2000.0,
                source: "B43F".into(),
            },
            Finding::Signal { dbm: -104 },
        ];
        for f in &findings {
            let [ru, kk, en] = [Lang::Ru, Lang::Kk, Lang::En].map(|l| f.say(l));
            assert!(
                ru != en && kk != en && ru != kk,
                "{f:?}: {ru} / {kk} / {en}"
            );
        }
        assert!(findings[0].say(Lang::Ru).contains("+3.50 с"));
        assert!(findings[1].say(Lang::Kk).contains("130 с"));
        assert!(findings[2].say(Lang::Ru).contains("-50–2000 ug/m3"));
        assert!(findings[3].say(Lang::Ru).contains("слабый"));
        assert_eq!(Lang::parse("kk"), Some(Lang::Kk));
        assert_eq!(Lang::parse("de"), None);
    }
}
