//! A sensor as installed on a post: of the quantities its driver measures, only those the
//! device config lists are passed on (a PMS5003 always reports PM1, PM2.5 and PM10; a post
//! provisioned for PM2.5 alone publishes PM2.5 alone), so the telemetry matches the installed
//! sensors the status reports. Boards and the simulator wrap their drivers in it.

use embassy_time::Duration;
use protocol::Quantity;

use crate::sensor::{Samples, Sensor};

/// `S` limited to the quantities in `keep`.
pub struct Installed<S> {
    inner: S,
    keep: &'static [Quantity],
}

impl<S: Sensor> Installed<S> {
    /// `inner`, passing on only `keep` (a subset of `inner.quantities()`, in its order).
    pub fn new(inner: S, keep: &'static [Quantity]) -> Self {
        Self { inner, keep }
    }
}

impl<S: Sensor> Sensor for Installed<S> {
    const NAME: &'static str = S::NAME;
    const MIN_POLL_INTERVAL: Duration = S::MIN_POLL_INTERVAL;
    type Error = S::Error;

    fn quantities(&self) -> &'static [Quantity] {
        self.keep
    }

    async fn init(&mut self) -> Result<(), Self::Error> {
        self.inner.init().await
    }

    async fn poll(&mut self, out: &mut Samples) -> Result<(), Self::Error> {
        let mut all = Samples::new();
        self.inner.poll(&mut all).await?;
        for sample in all.into_iter().filter(|s| self.keep.contains(&s.quantity)) {
            // `out` has the same capacity as `all`: there is room.
            let _ = out.push(sample);
        }
        Ok(())
    }
}
