{
  "targets": [
    {
      "target_name": "vecgate",
      "sources": [
        "native/addon.cc",
        "native/conn.cc",
        "native/tls-context.cc",
        "native/pump.cc",
        "native/pg-frame-parser.cc",
        "native/pg-reply-tracker.cc",
        "native/record-frame.cc",
        "native/crc32-fold.cc",
        "native/json-number-list.cc",
        "native/http-response-head.cc",
        "native/statement-recorder.cc",
        "native/record-sink.cc"
      ],
      "include_dirs": [
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
