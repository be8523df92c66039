/*
 * Fluent Bit's proxy ("Go") output-plugin ABI, as a plugin sees it (Linux, LP64).
 *
 * Written from ../shared/spec/flb-abi.md (Fluent Bit 5.1.1, src/flb_plugin_proxy.c,
 * src/proxy/go/go.h, include/fluent-bit/flb_plugin_proxy.h, include/fluent-bit/flb_api.h),
 * not copied from Fluent Bit's headers. Self-contained: no system includes, so bindgen
 * needs nothing but libclang. Rust bindings are generated from this file by
 * ci/gen-bindings and committed in src/generated.rs.
 */
#ifndef D2P_FLB_PROXY_H
#define D2P_FLB_PROXY_H

typedef __SIZE_TYPE__ size_t;

/* Flush return codes (include/fluent-bit/flb_macros.h). Anything else means FLB_ERROR. */
#define FLB_ERROR 0
#define FLB_OK 1
#define FLB_RETRY 2

/* Proxy kinds and the only proxy type. */
#define FLB_PROXY_INPUT_PLUGIN 1
#define FLB_PROXY_OUTPUT_PLUGIN 2
#define FLB_PROXY_CUSTOM_PLUGIN 3
#define FLB_PROXY_GOLANG 11

/* Log levels (include/fluent-bit/flb_log.h). */
#define FLB_LOG_OFF 0
#define FLB_LOG_ERROR 1
#define FLB_LOG_WARN 2
#define FLB_LOG_INFO 3
#define FLB_LOG_DEBUG 4
#define FLB_LOG_TRACE 5

/* Output event types (def.event_type, 0 also means logs). */
#define FLB_OUTPUT_LOGS 1
#define FLB_OUTPUT_METRICS 2
#define FLB_OUTPUT_TRACES 4
#define FLB_OUTPUT_BLOBS 8
#define FLB_OUTPUT_PROFILES 16

/* Group markers: EventTime seconds of a group start / end event. */
#define FLB_GROUP_START_SECONDS 0xFFFFFFFFu
#define FLB_GROUP_END_SECONDS 0xFFFFFFFEu

/* Opaque Fluent Bit objects. */
struct flb_config_map;
struct flb_output_instance;
struct flb_input_instance;
struct flb_custom_instance;
struct flb_plugin_proxy;

/*
 * Registration block filled by FLBPluginRegister. A plugin writes only the first five
 * fields: the block is 32 bytes (malloc) up to v4.2.2, 40 bytes up to v5.1.0 and 48
 * bytes (calloc) from v5.1.1.
 */
struct flb_plugin_proxy_def {
    int type;                              /* 0: FLB_PROXY_OUTPUT_PLUGIN */
    int proxy;                             /* 4: FLB_PROXY_GOLANG */
    int flags;                             /* 8: 0 */
    char *name;                            /* 16: [OUTPUT] Name */
    char *description;                     /* 24: kept by pointer, never freed */
    int event_type;                        /* 32: v4.2.3+, leave alone */
    struct flb_config_map *config_map;     /* 40: v5.1.1+, leave NULL */
};

/* Service table (72 bytes from v4.0.3; offsets 0-48 valid from v2.0.0). */
struct flb_api {
    const char *(*output_get_property)(const char *key, struct flb_output_instance *ins);
    const char *(*input_get_property)(const char *key, struct flb_input_instance *ins);
    void *(*output_get_cmt_instance)(struct flb_output_instance *ins);
    void *(*input_get_cmt_instance)(struct flb_input_instance *ins);
    void (*log_print)(int level, const char *file, int line, const char *fmt, ...);
    int (*input_log_check)(struct flb_input_instance *ins, int level);
    int (*output_log_check)(struct flb_output_instance *ins, int level);
    const char *(*custom_get_property)(const char *key, struct flb_custom_instance *ins);
    int (*custom_log_check)(struct flb_custom_instance *ins, int level);
};

/* Per-instance proxy context (calloc'd by Fluent Bit, 16 bytes). */
struct flb_plugin_proxy_context {
    void *remote_context;                  /* 0: the plugin's per-instance pointer */
    struct flb_plugin_proxy *proxy;        /* 8: Fluent Bit-internal */
};

/*
 * The struct passed to FLBPluginInit. One per loaded .so: o_ins and context are
 * overwritten before each instance's Init. A plugin reads offsets 0-24 only.
 */
struct flbgo_output_plugin {
    char *name;                                   /* 0 */
    struct flb_api *api;                          /* 8 */
    struct flb_output_instance *o_ins;            /* 16 */
    struct flb_plugin_proxy_context *context;     /* 24 */
    int (*cb_init)(void *);                       /* 32, internal */
    int (*cb_flush)(const void *, size_t, const char *);          /* 40, internal */
    int (*cb_flush_ctx)(void *, const void *, size_t, char *);    /* 48, internal */
    int (*cb_exit)(void);                         /* 56, internal */
    int (*cb_exit_ctx)(void *);                   /* 64, internal */
};

/* Exported symbols, as Fluent Bit calls them. */
typedef int (*flb_plugin_pre_register_fn)(int hot_reloading);
typedef int (*flb_plugin_register_fn)(struct flb_plugin_proxy_def *def);
typedef int (*flb_plugin_init_fn)(struct flbgo_output_plugin *plugin);
typedef int (*flb_plugin_flush_ctx_fn)(void *remote_ctx, const void *data, size_t size, char *tag);
typedef int (*flb_plugin_flush_fn)(const void *data, size_t size, const char *tag);
typedef int (*flb_plugin_exit_ctx_fn)(void *remote_ctx);
typedef int (*flb_plugin_exit_fn)(void);
typedef void (*flb_plugin_unregister_fn)(struct flb_plugin_proxy_def *def);
typedef int (*flb_plugin_output_pre_run_fn)(int enable_hot_reload);
typedef void (*flb_plugin_output_pre_exit_fn)(int shutdown_by_hot_reloading);

#endif
