#![no_std]
#![no_main]
use {defmt_rtt as _, panic_probe as _};
#[embassy_executor::main]
async fn main(_s: embassy_executor::Spawner) {
    let _p = embassy_stm32::init(Default::default());
    defmt::info!("hello");
}
