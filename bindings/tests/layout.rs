//! Every size and offset that `flb-abi.md` gives, pinned (LP64: x86_64, aarch64).

use flb_proxy_sys::*;
use std::mem::{offset_of, size_of};

#[test]
fn proxy_def() {
    // §1.3: 48 bytes from v5.1.1; a plugin writes only offsets 0-24.
    assert_eq!(offset_of!(flb_plugin_proxy_def, type_), 0);
    assert_eq!(offset_of!(flb_plugin_proxy_def, proxy), 4);
    assert_eq!(offset_of!(flb_plugin_proxy_def, flags), 8);
    assert_eq!(offset_of!(flb_plugin_proxy_def, name), 16);
    assert_eq!(offset_of!(flb_plugin_proxy_def, description), 24);
    assert_eq!(offset_of!(flb_plugin_proxy_def, event_type), 32);
    assert_eq!(offset_of!(flb_plugin_proxy_def, config_map), 40);
    assert_eq!(size_of::<flb_plugin_proxy_def>(), 48);
}

#[test]
fn init_struct() {
    // §2.1
    assert_eq!(offset_of!(flbgo_output_plugin, name), 0);
    assert_eq!(offset_of!(flbgo_output_plugin, api), 8);
    assert_eq!(offset_of!(flbgo_output_plugin, o_ins), 16);
    assert_eq!(offset_of!(flbgo_output_plugin, context), 24);
    assert_eq!(offset_of!(flbgo_output_plugin, cb_init), 32);
    assert_eq!(offset_of!(flbgo_output_plugin, cb_flush), 40);
    assert_eq!(offset_of!(flbgo_output_plugin, cb_flush_ctx), 48);
    assert_eq!(offset_of!(flbgo_output_plugin, cb_exit), 56);
    assert_eq!(offset_of!(flbgo_output_plugin, cb_exit_ctx), 64);
    assert_eq!(size_of::<flbgo_output_plugin>(), 72);
}

#[test]
fn proxy_context() {
    assert_eq!(offset_of!(flb_plugin_proxy_context, remote_context), 0);
    assert_eq!(offset_of!(flb_plugin_proxy_context, proxy), 8);
    assert_eq!(size_of::<flb_plugin_proxy_context>(), 16);
}

#[test]
fn api_table() {
    // §2.2: 72 bytes from v4.0.3; 0-48 valid from v2.0.0.
    assert_eq!(offset_of!(flb_api, output_get_property), 0);
    assert_eq!(offset_of!(flb_api, input_get_property), 8);
    assert_eq!(offset_of!(flb_api, output_get_cmt_instance), 16);
    assert_eq!(offset_of!(flb_api, input_get_cmt_instance), 24);
    assert_eq!(offset_of!(flb_api, log_print), 32);
    assert_eq!(offset_of!(flb_api, input_log_check), 40);
    assert_eq!(offset_of!(flb_api, output_log_check), 48);
    assert_eq!(offset_of!(flb_api, custom_get_property), 56);
    assert_eq!(offset_of!(flb_api, custom_log_check), 64);
    assert_eq!(size_of::<flb_api>(), 72);
}

#[test]
fn constants() {
    assert_eq!((FLB_ERROR, FLB_OK, FLB_RETRY), (0, 1, 2));
    assert_eq!((FLB_PROXY_OUTPUT_PLUGIN, FLB_PROXY_GOLANG), (2, 11));
    assert_eq!(
        (FLB_LOG_ERROR, FLB_LOG_WARN, FLB_LOG_INFO, FLB_LOG_DEBUG),
        (1, 2, 3, 4)
    );
    assert_eq!(
        (FLB_GROUP_START_SECONDS, FLB_GROUP_END_SECONDS),
        (0xFFFF_FFFF, 0xFFFF_FFFE)
    );
    // The flush length is size_t: the callback type takes a usize.
    let f: flb_plugin_flush_ctx_fn = None;
    let _: Option<
        unsafe extern "C" fn(
            *mut core::ffi::c_void,
            *const core::ffi::c_void,
            usize,
            *mut core::ffi::c_char,
        ) -> i32,
    > = f;
}
