# Shared by the benchmark scripts (sourced, not run).

# Builds the raftkms binary a benchmark runs and sets BIN and BUILD_PROFILE: the `release` profile
# (what users run) unless PROFILE=dev is given (the profile tests use: our crate at opt-level 1
# with debug assertions, dependencies at opt-level 3). Needs CARGO_TARGET_DIR.
build_raftkms() {
  BUILD_PROFILE=${PROFILE:-release}
  case "$BUILD_PROFILE" in
    release)
      cargo build --quiet --release --bin raftkms
      BIN=$CARGO_TARGET_DIR/release/raftkms ;;
    dev)
      cargo build --quiet --bin raftkms
      BIN=$CARGO_TARGET_DIR/debug/raftkms ;;
    *)
      echo "PROFILE must be release or dev, not '$BUILD_PROFILE'" >&2
      exit 2 ;;
  esac
}

# The Raft timing every raftkms node of a benchmark is started with, written into its config and
# recorded in the run's meta.env (the report reads it from there). The values are raftkms's
# defaults; override them in the environment to measure other settings.
KMS_HEARTBEAT_MS=${KMS_HEARTBEAT_MS:-100}
KMS_ELECTION_MIN_MS=${KMS_ELECTION_MIN_MS:-300}
KMS_ELECTION_MAX_MS=${KMS_ELECTION_MAX_MS:-450}
KMS_READ_LEASE_MS=${KMS_READ_LEASE_MS:-250}

# The [timing] table of a raftkms node config with the values above.
kms_timing_toml() {
  printf '[timing]\nheartbeat-ms = %d\nelection-min-ms = %d\nelection-max-ms = %d\nread-lease-ms = %d\n' \
    "$KMS_HEARTBEAT_MS" "$KMS_ELECTION_MIN_MS" "$KMS_ELECTION_MAX_MS" "$KMS_READ_LEASE_MS"
}

# meta.env lines describing the raftkms build and timing of this run.
kms_meta() {
  echo "profile=$BUILD_PROFILE"
  echo "kms_heartbeat_ms=$KMS_HEARTBEAT_MS"
  echo "kms_election_ms=$KMS_ELECTION_MIN_MS-$KMS_ELECTION_MAX_MS"
  echo "kms_read_lease_ms=$KMS_READ_LEASE_MS"
}
