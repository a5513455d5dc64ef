//! What posts measure, and the single unit each quantity travels in.

use core::fmt;

/// A measured quantity. The wire name ([`Quantity::as_str`]) is the SenML record name after the
/// post's base name; each quantity has exactly one [`Unit`] so values never cross the wire
/// unlabelled or in a surprising unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Quantity {
    /// PM1 mass concentration, µg/m³.
    Pm1,
    /// PM2.5 mass concentration, µg/m³.
    Pm2_5,
    /// PM10 mass concentration, µg/m³.
    Pm10,
    /// Nitrogen dioxide, µg/m³ (converted from ppb with measured temperature and pressure).
    No2,
    /// Air temperature, °C.
    Temperature,
    /// Relative humidity, %.
    Humidity,
    /// Air pressure, Pa.
    Pressure,
    /// River water level, cm above the gauge zero.
    WaterLevel,
    /// Water temperature, °C.
    WaterTemperature,
    /// Electrical conductivity, µS/cm.
    Conductivity,
    /// Turbidity, NTU.
    Turbidity,
    /// Dissolved oxygen, mg/L.
    DissolvedOxygen,
    /// pH.
    Ph,
    /// Radio signal strength, dBm (device health).
    Rssi,
    /// Supply voltage, V (device health).
    SupplyVoltage,
}

/// A SenML unit (RFC 8428 §12.1 names where one exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unit {
    /// Micrograms per cubic metre, `ug/m3`.
    MicrogramsPerCubicMetre,
    /// Degrees Celsius, `Cel`.
    Celsius,
    /// Relative humidity, `%RH`.
    PercentRelativeHumidity,
    /// Pascal, `Pa`.
    Pascal,
    /// Centimetres, `cm`.
    Centimetre,
    /// Microsiemens per centimetre, `uS/cm`.
    MicrosiemensPerCentimetre,
    /// Nephelometric turbidity units, `NTU`.
    Ntu,
    /// Milligrams per litre, `mg/L`.
    MilligramsPerLitre,
    /// pH, `pH`.
    Ph,
    /// Decibel-milliwatts, `dBm`.
    DecibelMilliwatt,
    /// Volt, `V`.
    Volt,
}

impl Quantity {
    /// Every quantity, in wire order.
    pub const ALL: [Quantity; 15] = [
        Self::Pm1,
        Self::Pm2_5,
        Self::Pm10,
        Self::No2,
        Self::Temperature,
        Self::Humidity,
        Self::Pressure,
        Self::WaterLevel,
        Self::WaterTemperature,
        Self::Conductivity,
        Self::Turbidity,
        Self::DissolvedOxygen,
        Self::Ph,
        Self::Rssi,
        Self::SupplyVoltage,
    ];

    /// The SenML record name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pm1 => "pm1",
            Self::Pm2_5 => "pm2_5",
            Self::Pm10 => "pm10",
            Self::No2 => "no2",
            Self::Temperature => "temperature",
            Self::Humidity => "humidity",
            Self::Pressure => "pressure",
            Self::WaterLevel => "water_level",
            Self::WaterTemperature => "water_temperature",
            Self::Conductivity => "conductivity",
            Self::Turbidity => "turbidity",
            Self::DissolvedOxygen => "dissolved_oxygen",
            Self::Ph => "ph",
            Self::Rssi => "rssi",
            Self::SupplyVoltage => "supply_voltage",
        }
    }

    /// The quantity with this SenML record name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == name)
    }

    /// The one unit this quantity is carried in.
    pub const fn unit(self) -> Unit {
        match self {
            Self::Pm1 | Self::Pm2_5 | Self::Pm10 | Self::No2 => Unit::MicrogramsPerCubicMetre,
            Self::Temperature | Self::WaterTemperature => Unit::Celsius,
            Self::Humidity => Unit::PercentRelativeHumidity,
            Self::Pressure => Unit::Pascal,
            Self::WaterLevel => Unit::Centimetre,
            Self::Conductivity => Unit::MicrosiemensPerCentimetre,
            Self::Turbidity => Unit::Ntu,
            Self::DissolvedOxygen => Unit::MilligramsPerLitre,
            Self::Ph => Unit::Ph,
            Self::Rssi => Unit::DecibelMilliwatt,
            Self::SupplyVoltage => Unit::Volt,
        }
    }

    /// Device-health quantities describe the post, not the environment.
    pub const fn is_device_health(self) -> bool {
        matches!(self, Self::Rssi | Self::SupplyVoltage)
    }
}

impl Unit {
    /// The SenML unit string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MicrogramsPerCubicMetre => "ug/m3",
            Self::Celsius => "Cel",
            Self::PercentRelativeHumidity => "%RH",
            Self::Pascal => "Pa",
            Self::Centimetre => "cm",
            Self::MicrosiemensPerCentimetre => "uS/cm",
            Self::Ntu => "NTU",
            Self::MilligramsPerLitre => "mg/L",
            Self::Ph => "pH",
            Self::DecibelMilliwatt => "dBm",
            Self::Volt => "V",
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity name such as pm2_5 or water_level")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Unit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quantity_name_round_trips() {
        for q in Quantity::ALL {
            assert_eq!(Quantity::parse(q.as_str()), Some(q));
        }
        assert_eq!(Quantity::parse("pm25"), None);
        assert_eq!(Quantity::parse("PM2_5"), None);
    }

    #[test]
    fn air_quality_quantities_are_micrograms_per_cubic_metre() {
        for q in [
            Quantity::Pm1,
            Quantity::Pm2_5,
            Quantity::Pm10,
            Quantity::No2,
        ] {
            assert_eq!(q.unit().as_str(), "ug/m3");
        }
        assert_eq!(Quantity::WaterLevel.unit().as_str(), "cm");
    }
}
