//! Arbitrary bytes through the decoder and the hasher: must return an error or a hash, never
//! panic, and never allocate past the limits (small here so the fuzzer stays fast).
#![no_main]

use haven_pdq::decode::{decode_bytes, Limits};
use haven_pdq::{hash_rgb, hash_rgb_dihedral};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_file_bytes: 4 << 20,
        max_pixels: 4_000_000,
    };
    if let Ok(img) = decode_bytes(data, &limits) {
        assert!(img.pixels().len() == img.width() * img.height() * 3);
        let plain = hash_rgb(img.view());
        let dihedral = hash_rgb_dihedral(img.view());
        // The reference skips the blur for exactly 64x64 in the plain hash only.
        if (img.width(), img.height()) != (64, 64) {
            assert_eq!(plain.quality, dihedral.quality);
            assert_eq!(plain.hash, dihedral.hashes[0]);
        }
        assert!(plain.quality <= 100);
    }
});
