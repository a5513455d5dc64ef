//! The board's HAL-free modules compiled for the host and tested: the AT parsers
//! (`src/at.rs`) and the device config checks (`src/provisioning.rs`).
#![no_std]

#[path = "../../src/at.rs"]
pub mod at;
#[path = "../../src/provisioning.rs"]
pub mod provisioning;

#[cfg(test)]
mod tests {
    use crate::at::*;

    #[test]
    fn csq_maps_rssi_codes_to_dbm_and_99_to_unknown() {
        // 27.007 §8.5: 0 -> -113 dBm, 2 -> -109, 17 -> -79, 31 -> -51, 99 -> not known.
        assert_eq!(csq_rssi_dbm("+CSQ: 0,99"), Ok(Some(-113)));
        assert_eq!(csq_rssi_dbm("+CSQ: 2,0"), Ok(Some(-109)));
        assert_eq!(csq_rssi_dbm("+CSQ: 17,99"), Ok(Some(-79)));
        assert_eq!(csq_rssi_dbm("+CSQ: 31,99"), Ok(Some(-51)));
        assert_eq!(csq_rssi_dbm("+CSQ: 99,99"), Ok(None));
    }

    #[test]
    fn csq_refuses_out_of_range_and_garbage() {
        assert_eq!(csq_rssi_dbm("+CSQ: 45,0"), Err(ParseError::OutOfRange));
        assert_eq!(csq_rssi_dbm("+CSQ: ,0"), Err(ParseError::Malformed));
        assert_eq!(csq_rssi_dbm("+CREG: 1"), Err(ParseError::Malformed));
    }

    #[test]
    fn cclk_in_utc_gives_unix_seconds() {
        // 2026-01-15T08:30:00Z: 2026-01-01 is 1_767_225_600, plus 14 days and 8.5 h
        // = 1_767_225_600 + 1_209_600 + 30_600 = 1_768_465_800.
        assert_eq!(
            cclk_unix_s("+CCLK: \"26/01/15,08:30:00+00\""),
            Ok(1_768_465_800)
        );
    }

    #[test]
    fn cclk_local_time_with_almaty_offset_is_shifted_to_utc() {
        // Almaty is UTC+5 since 2024-03-01: +20 quarter hours. 13:30 local = 08:30 UTC.
        assert_eq!(
            cclk_unix_s("+CCLK: \"26/01/15,13:30:00+20\""),
            Ok(1_768_465_800)
        );
        // A negative offset: 05:30 at UTC-3 (-12 quarter hours) = 08:30 UTC.
        assert_eq!(
            cclk_unix_s("+CCLK: \"26/01/15,05:30:00-12\""),
            Ok(1_768_465_800)
        );
    }

    #[test]
    fn cclk_crosses_a_leap_day() {
        // 2028-03-01T00:00:00Z = 1_835_481_600 (2028 is a leap year: Feb has 29 days).
        assert_eq!(
            cclk_unix_s("+CCLK: \"28/03/01,00:00:00+00\""),
            Ok(1_835_481_600)
        );
        assert_eq!(
            cclk_unix_s("+CCLK: \"28/02/29,23:59:59+00\""),
            Ok(1_835_481_599)
        );
    }

    #[test]
    fn cclk_of_an_unsynchronised_modem_is_before_the_plausible_floor() {
        // The SIM7080G boots at 1980-01-06: 10 years with 2 leap days = 3_652 days, + 5 days
        // = 3_657 days · 86_400 = 315_964_800 s. Read as 1980, not 2080.
        assert_eq!(
            cclk_unix_s("+CCLK: \"80/01/06,00:00:00+00\""),
            Ok(315_964_800)
        );
        let t = cclk_unix_s("+CCLK: \"25/12/31,23:59:59+00\"").unwrap();
        assert!(t < EARLIEST_PLAUSIBLE_UNIX_S, "{t}");
    }

    #[test]
    fn cclk_refuses_malformed_and_impossible_times() {
        assert_eq!(
            cclk_unix_s("+CCLK: \"26/13/15,08:30:00+00\""),
            Err(ParseError::OutOfRange)
        );
        assert_eq!(
            cclk_unix_s("+CCLK: \"26/01/15,24:30:00+00\""),
            Err(ParseError::OutOfRange)
        );
        assert_eq!(
            cclk_unix_s("+CCLK: \"26/01/15 08:30:00+00\""),
            Err(ParseError::Malformed)
        );
        assert_eq!(
            cclk_unix_s("+CCLK: \"26/01/15,08:30:00\""),
            Err(ParseError::Malformed)
        );
        assert_eq!(
            cclk_unix_s("+CCLK: \"26/01/15,08:30:00*00\""),
            Err(ParseError::Malformed)
        );
    }

    #[test]
    fn smsub_hex_payload_keeps_binary_bytes() {
        // CBOR map header, a quote, CR and LF: everything a plain-text URC would break on.
        let m = smsub("+SMSUB: \"taza/v1/posts/p-1/config\",\"A1220D0AFF00\"").unwrap();
        assert_eq!(m.topic, "taza/v1/posts/p-1/config");
        assert_eq!(m.payload.as_slice(), &[0xA1, 0x22, 0x0D, 0x0A, 0xFF, 0x00]);
    }

    #[test]
    fn smsub_accepts_lowercase_and_unquoted_hex() {
        let m = smsub("+SMSUB: \"t\",a1ff").unwrap();
        assert_eq!(m.payload.as_slice(), &[0xA1, 0xFF]);
    }

    #[test]
    fn smsub_refuses_odd_or_non_hex_and_oversized_payloads() {
        assert!(matches!(
            smsub("+SMSUB: \"t\",\"ABC\""),
            Err(ParseError::Malformed)
        ));
        assert!(matches!(
            smsub("+SMSUB: \"t\",\"hello\""),
            Err(ParseError::Malformed)
        ));
        assert!(matches!(
            smsub("+SMSUB: t,\"AB\""),
            Err(ParseError::Malformed)
        ));
        let mut line = heapless::String::<2048>::new();
        line.push_str("+SMSUB: \"t\",\"").unwrap();
        for _ in 0..=protocol::post_config::MAX_CONFIG_BYTES {
            line.push_str("00").unwrap();
        }
        line.push('"').unwrap();
        assert!(matches!(smsub(&line), Err(ParseError::TooLong)));
    }

    #[test]
    fn quotable_refuses_quotes_and_control_characters() {
        assert!(quotable("mqtt.taza.kz"));
        assert!(quotable("p@ss word!"));
        assert!(!quotable("pa\"ss"));
        assert!(!quotable("line\r\nAT+CFUN=0"));
        assert!(!quotable("Алматы"));
    }
}

/// The board's view of a device config blob, from the bytes `gateway posts provision` writes.
#[cfg(test)]
mod provisioning_tests {
    use crate::provisioning::*;
    use protocol::device_config::{self, DeviceConfig, MAX_DEVICE_CONFIG_BYTES};
    use protocol::post_config::PostConfig;
    use protocol::{PostId, Quantity};

    fn text<const N: usize>(t: &str) -> heapless::String<N> {
        heapless::String::try_from(t).unwrap()
    }

    fn device(sensors: &[Quantity]) -> DeviceConfig {
        let config = PostConfig {
            sample_interval_s: 5,
            window_s: 300,
            ..PostConfig::default()
        };
        DeviceConfig {
            post: PostId::parse("almaty-042").unwrap(),
            broker_host: text("mqtt.taza.kz"),
            broker_port: 1883,
            broker_tls: false,
            username: text("almaty-042"),
            password: text("Zq8t-3vX_long-random-secret"),
            topic_prefix: text("taza-test"),
            sensors: sensors.iter().copied().collect(),
            config,
        }
    }

    /// Encodes and decodes like the flash round trip: what the board gets from the core's reader.
    fn through_blob(d: &DeviceConfig) -> DeviceConfig {
        let mut buf = [0xFFu8; MAX_DEVICE_CONFIG_BYTES];
        let n = device_config::encode(d, &mut buf).unwrap();
        assert!(n < buf.len());
        // The core reads the whole 1 KiB: the blob followed by erased flash.
        device_config::decode(&buf).unwrap()
    }

    #[test]
    fn a_provisioned_air_post_gets_its_identity_broker_credentials_and_config() {
        let d = device(&[Quantity::Pm2_5, Quantity::No2]);
        let board = BoardConfig::from_device(through_blob(&d), FLEET).unwrap();
        assert_eq!(board.post.as_str(), "almaty-042");
        assert_eq!(board.prefix.as_str(), "taza-test");
        assert_eq!(board.net.broker_host.as_str(), "mqtt.taza.kz");
        assert_eq!(board.net.broker_port, 1883);
        assert_eq!(board.net.username.as_str(), "almaty-042");
        assert_eq!(board.net.password.as_str(), "Zq8t-3vX_long-random-secret");
        assert_eq!(board.net.apn, FLEET.apn);
        assert_eq!(board.net.ntp_server, FLEET.ntp_server);
        assert_eq!(board.elevation_m, FLEET.elevation_m);
        assert_eq!(board.sensors.as_slice(), &[Quantity::Pm2_5, Quantity::No2]);
        assert_eq!(board.config.window_s, 300);
        assert_eq!(board.config.hash(), d.config.hash());
    }

    #[test]
    fn only_installed_quantities_of_each_sensor_are_kept_and_no2_needs_the_climate_sensor() {
        let board = BoardConfig::from_device(
            device(&[Quantity::No2, Quantity::Pm10, Quantity::Pm1]),
            FLEET,
        )
        .unwrap();
        let pms: heapless::Vec<Quantity, 3> = board.installed_of(&PMS_QUANTITIES);
        assert_eq!(pms.as_slice(), &[Quantity::Pm1, Quantity::Pm10]);
        let climate: heapless::Vec<Quantity, 2> = board.installed_of(&CLIMATE_QUANTITIES);
        assert!(climate.is_empty());
        // The SHT31 still runs: the NO2 cell is compensated with its temperature and humidity.
        assert!(board.needs_climate());
        let pm_only = BoardConfig::from_device(device(&[Quantity::Pm2_5]), FLEET).unwrap();
        assert!(!pm_only.needs_climate());
        let no2: heapless::Vec<Quantity, 1> = pm_only.installed_of(&NO2_QUANTITIES);
        assert!(no2.is_empty());
    }

    #[test]
    fn a_blob_asking_for_tls_is_refused_not_connected_in_clear() {
        let mut d = device(&[Quantity::Pm2_5]);
        d.broker_tls = true;
        d.broker_port = 8883;
        assert_eq!(
            BoardConfig::from_device(through_blob(&d), FLEET).unwrap_err(),
            Refusal::TlsUnsupported
        );
    }

    #[test]
    fn a_sensor_this_board_lacks_is_refused_by_name() {
        let d = device(&[Quantity::Pm2_5, Quantity::WaterLevel]);
        assert_eq!(
            BoardConfig::from_device(through_blob(&d), FLEET).unwrap_err(),
            Refusal::UnsupportedSensor(Quantity::WaterLevel.as_str())
        );
    }

    #[test]
    fn values_the_modem_cannot_quote_are_refused_with_the_field() {
        let mut d = device(&[Quantity::Pm2_5]);
        d.password = text("pa\"ss");
        assert_eq!(
            BoardConfig::from_device(through_blob(&d), FLEET).unwrap_err(),
            Refusal::Unquotable("password")
        );
        let mut d = device(&[Quantity::Pm2_5]);
        d.username = text("\u{0430}lmaty");
        assert_eq!(
            BoardConfig::from_device(through_blob(&d), FLEET).unwrap_err(),
            Refusal::Unquotable("user")
        );
    }
}
