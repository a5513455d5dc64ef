//! Corrections applied to a window's mean: the US EPA humidity correction for Plantower PM2.5
//! (Barkjohn et al. 2021, AMT 14:4617, with the 2023 smoke-range extension used by the AirNow
//! Fire and Smoke Map; see reference/norms-research.md §5.1) and the per-post linear
//! calibration from config. Pure functions; the caller keeps the raw value and sets
//! `QaFlags::CORRECTED`.

use protocol::post_config::Calibration;

/// US EPA corrected PM2.5 (µg/m³) from the Plantower CF=1 PM2.5 `cf1_ug_m3` and relative
/// humidity `rh_pct`. Piecewise in the CF=1 value:
/// - < 30: 0.524·PA − 0.0862·RH + 5.75
/// - 30-50: slope blends from 0.524 to 0.786 with w = PA/20 − 3/2
/// - 50-210: 0.786·PA − 0.0862·RH + 5.75
/// - 210-260: blend towards the smoke fit with w = PA/50 − 21/5
/// - ≥ 260: 2.966 + 0.69·PA + 8.84·10⁻⁴·PA²
///
/// The result is clipped at 0.
pub fn epa_pm2_5_ug_m3(cf1_ug_m3: f32, rh_pct: f32) -> f32 {
    let pa = cf1_ug_m3;
    let rh_term = -0.0862 * rh_pct + 5.75;
    let smoke = 2.966 + 0.69 * pa + 8.84e-4 * pa * pa;
    let v = if pa < 30.0 {
        0.524 * pa + rh_term
    } else if pa < 50.0 {
        let w = pa / 20.0 - 1.5;
        (0.786 * w + 0.524 * (1.0 - w)) * pa + rh_term
    } else if pa < 210.0 {
        0.786 * pa + rh_term
    } else if pa < 260.0 {
        let w = pa / 50.0 - 4.2;
        (0.786 * pa + rh_term) * (1.0 - w) + smoke * w
    } else {
        smoke
    };
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

/// Applies `gain · value + offset`.
pub fn calibrate(value: f32, cal: &Calibration) -> f32 {
    cal.gain * value + cal.offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-3
    }

    #[test]
    fn epa_correction_matches_hand_computed_points_on_each_piece() {
        // PA 20, RH 50: 0.524·20 − 0.0862·50 + 5.75 = 10.48 − 4.31 + 5.75 = 11.92
        assert!(close(epa_pm2_5_ug_m3(20.0, 50.0), 11.92));
        // PA 40, RH 50: w = 2 − 1.5 = 0.5; slope = 0.786·0.5 + 0.524·0.5 = 0.655;
        // 0.655·40 = 26.2; 26.2 − 4.31 + 5.75 = 27.64
        assert!(close(epa_pm2_5_ug_m3(40.0, 50.0), 27.64));
        // PA 100, RH 80: 78.6 − 6.896 + 5.75 = 77.454
        assert!(close(epa_pm2_5_ug_m3(100.0, 80.0), 77.454));
        // PA 300: 2.966 + 207 + 8.84e-4·90000 (= 79.56) = 289.526
        assert!((epa_pm2_5_ug_m3(300.0, 50.0) - 289.526).abs() < 0.01);
        // Clean, very humid air clips at zero: 0.524·1 − 8.62 + 5.75 < 0.
        assert_eq!(epa_pm2_5_ug_m3(1.0, 100.0), 0.0);
    }

    #[test]
    fn linear_calibration_scales_then_offsets() {
        let cal = Calibration {
            quantity: protocol::Quantity::No2,
            gain: 0.8,
            offset: -4.0,
        };
        assert!(close(calibrate(50.0, &cal), 36.0));
    }
}
