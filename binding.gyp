{
  "targets": [
    {
      "target_name": "vecgate",
      "sources": [
        "native/bindings/addon.cc",
        "native/bindings/net-bindings.cc",
        "native/bindings/session-bindings.cc",
        "native/bindings/http-bindings.cc",
        "native/bindings/recording-bindings.cc",
        "native/net/conn.cc",
        "native/net/close-reason.cc",
        "native/net/tls-context.cc",
        "native/session/pump.cc",
        "native/pg/pg-frame-parser.cc",
        "native/pg/pg-reply-tracker.cc",
        "native/pg/session-pins.cc",
        "native/pg/prepared-statements.cc",
        "native/pg/statement-recorder.cc",
        "native/http/json-number-list.cc",
        "native/http/http-response-head.cc",
        "native/recording/record-frame.cc",
        "native/recording/record-sink.cc",
        "native/recording/crc32-fold.cc"
      ],
      "include_dirs": [
        "native",
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ],
      "cflags_cc": ["-std=c++17", "-O2", "-fno-exceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-rtti"],
      "conditions": [
        ["OS=='linux'", { "ldflags": ["-Wl,--no-undefined-version"] }]
      ]
    }
  ]
}
