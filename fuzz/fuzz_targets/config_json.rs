//! A bundle's config.json from hostile bytes: the OCI model's parse, and
//! `create`'s own checks and fix (mounts into /proc, the device cgroup's
//! deny-all). Never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sbx_oci::confcheck;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<oci_spec::runtime::Spec>(data);
    // A bundle that does not exist: nothing on the host is read.
    let inspected = confcheck::inspect(data, Path::new("/nonexistent/sbx-oci-fuzz"));
    if let Ok(mut spec) = serde_json::from_slice::<serde_json::Value>(data) {
        let changed = confcheck::deny_devices_first(&mut spec);
        // Fixed once, fixed for good.
        assert!(!confcheck::deny_devices_first(&mut spec));
        // What inspect said is what the fix finds (when it could decide).
        if let Ok(i) = inspected
            && spec.get("linux").is_some_and(|l| l.is_object())
        {
            assert_eq!(i.deny_devices, changed);
        }
    }
});
