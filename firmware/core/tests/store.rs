//! The store-and-forward queue on emulated NOR flash, across a simulated reboot.

use embassy_futures::block_on;
use taza_firmware_core::store::{RamNorFlash, RecordQueue};

/// Four 4 KiB pages.
type Flash = RamNorFlash<16_384>;
const RANGE: core::ops::Range<u32> = 0..16_384;

fn pack(i: u32) -> Vec<u8> {
    // A stand-in for an encoded SenML pack: 200 bytes tagged with its index.
    let mut p = vec![0xA5; 200];
    p[..4].copy_from_slice(&i.to_be_bytes());
    p
}

#[test]
fn queued_packs_survive_a_reboot_and_replay_oldest_first() {
    block_on(async {
        let mut q = RecordQueue::open(Flash::new(), RANGE.clone()).unwrap();
        for i in 0..3 {
            q.push(&pack(i)).await.unwrap();
        }
        // Power cut: only the flash contents remain.
        let flash = q.into_flash();
        let mut q = RecordQueue::open(flash, RANGE.clone()).unwrap();
        assert_eq!(q.pending_packs().await.unwrap(), 3);
        let mut buf = [0u8; 512];
        for i in 0..3 {
            let oldest = q.peek(&mut buf).await.unwrap().unwrap().to_vec();
            assert_eq!(oldest, pack(i));
            assert!(q.remove_if_oldest(&oldest).await.unwrap());
        }
        assert!(q.peek(&mut buf).await.unwrap().is_none());
    });
}

#[test]
fn a_pack_is_not_removed_unless_it_is_still_the_oldest() {
    block_on(async {
        let mut q = RecordQueue::open(Flash::new(), RANGE.clone()).unwrap();
        q.push(&pack(1)).await.unwrap();
        q.push(&pack(2)).await.unwrap();
        assert!(!q.remove_if_oldest(&pack(2)).await.unwrap());
        assert_eq!(q.pending_packs().await.unwrap(), 2);
    });
}

#[test]
fn full_queue_drops_oldest_first_and_counts_every_drop() {
    block_on(async {
        let mut q = RecordQueue::open(Flash::new(), RANGE.clone()).unwrap();
        let n = 200;
        for i in 0..n {
            q.push(&pack(i)).await.unwrap();
        }
        let kept = q.pending_packs().await.unwrap() as u32;
        assert!(kept < n, "the flash cannot hold {n} packs");
        assert_eq!(
            q.dropped() + kept,
            n,
            "every pack is either kept or counted as dropped"
        );
        let mut buf = [0u8; 512];
        let oldest = q.peek(&mut buf).await.unwrap().unwrap().to_vec();
        assert_eq!(oldest, pack(n - kept), "the newest packs are the ones kept");
    });
}
