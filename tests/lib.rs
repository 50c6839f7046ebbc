//! End-to-end tests of keybroker live in `e2e/` (one test binary, many modules). They drive
//! the real `keybroker` binary, load the real plugin `.so` files from drop-ins, and talk to
//! it with OpenBao's `bao` CLI and `curl`. Build the workspace first (`tests/run` does).
