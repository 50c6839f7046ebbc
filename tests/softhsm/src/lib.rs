//! A real SoftHSM2 token store for tests: no mocks, no fake PKCS#11 module.
//!
//! [`SoftHsm::new`] makes a throwaway directory holding a `softhsm2.conf` whose token
//! directory (`tokens/`) is inside it; [`SoftHsm::add_token`] initialises a token with
//! `softhsm2-util --init-token --free` (in a staging store, then moves it there) and writes
//! its user PIN to a `0600` file, as an operator would for the plugin's `pin_file`. Tests talk to the tokens through the real
//! module (`libsofthsm2.so`, found at [`SoftHsm::module_path`]) and prepare or inspect objects
//! with opensc's `pkcs11-tool` ([`SoftHsm::pkcs11_tool`] and the key helpers), which run as
//! child processes with `SOFTHSM2_CONF` pointing at this store.
//!
//! # One store per process
//!
//! SoftHSM reads `SOFTHSM2_CONF` from the process environment at `C_Initialize`, and a
//! PKCS#11 module is initialised once per process; so every test in one test binary that
//! loads the module in-process must use the same store: [`SoftHsm::shared`], which sets
//! `SOFTHSM2_CONF` once, before any test can initialise the module. Each test then adds a
//! token of its own with a unique label ([`unique_label`]). Child processes (the broker
//! binary in end-to-end tests) can use their own [`SoftHsm::new`] store through
//! [`SoftHsm::env`].
//!
//! What SoftHSM 2.6 does with tokens, found by experiment and relied on by these tests:
//! - a token initialised by another process after this process called `C_Initialize` is
//!   not listed by `C_GetSlotList` until the module is finalised and initialised again;
//!   objects created by another process in a token already listed *are* seen;
//! - a token directory moved away ([`SoftHsm::hide_token`], [`SoftHsm::hide_tokens`]) is
//!   not noticed by `C_GetSessionInfo` (sessions still look logged in) nor `C_OpenSession`;
//!   `C_GetTokenInfo` fails with `CKR_GENERAL_ERROR`, object handles become invalid
//!   (`CKR_OBJECT_HANDLE_INVALID`) and `C_FindObjects` finds nothing. Moving it back does not
//!   help until the module is re-initialised; `C_Initialize` fails with `CKR_GENERAL_ERROR`
//!   while the whole token directory is missing.
//!
//! Everything fails loudly: if SoftHSM2 or opensc is missing the calling test panics saying
//! what to install (`apt-get install softhsm2 opensc`); no test skips.

// A test harness: failing loudly, with the reason, is its job.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs,
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, OnceLock,
    },
};

use sha2::{Digest as _, Sha256};

/// The environment variable SoftHSM reads its configuration file from.
pub const CONF_ENV: &str = "SOFTHSM2_CONF";
/// Overrides where the module is looked for.
pub const MODULE_ENV: &str = "KEYBROKER_SOFTHSM_MODULE";
/// The security officer PIN of every token the harness makes (tests never need it).
pub const SO_PIN: &str = "kb-so-pin-0000";
/// What to install when a tool or the module is missing.
const INSTALL_HINT: &str =
    "install SoftHSM2 and opensc (Debian: apt-get install softhsm2 opensc; tests/run does)";

/// A SoftHSM2 token store in a throwaway directory. Dropping it deletes the directory.
pub struct SoftHsm {
    dir: tempfile::TempDir,
    module: PathBuf,
    /// Tokens made by [`SoftHsm::add_token`], by label. The lock also serialises
    /// `softhsm2-util` runs and renames of the token directory.
    tokens: Mutex<BTreeMap<String, Token>>,
}

struct Token {
    /// The token's directory name under `tokens/` (SoftHSM names it by a UUID).
    dir_name: OsString,
    pin: String,
}

/// One object as `pkcs11-tool --list-objects` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenObject {
    /// The heading line, e.g. `Secret Key Object; AES length 32`, `Private Key Object; EC`.
    pub kind: String,
    /// `CKA_LABEL`, if any.
    pub label: Option<String>,
    /// `CKA_ID` in lowercase hex, if any.
    pub id: Option<String>,
}

impl SoftHsm {
    /// A fresh, empty store. Does not touch the process environment: in-process tests use
    /// [`SoftHsm::shared`], child processes get [`SoftHsm::env`].
    pub fn new() -> SoftHsm {
        let dir = tempfile::Builder::new()
            .prefix("keybroker-softhsm-")
            .tempdir()
            .expect("create a temporary directory for SoftHSM");
        Self::in_dir(dir)
    }

    /// The store shared by every test of this process; sets `SOFTHSM2_CONF` in the process
    /// environment the first time it is called. Call it before anything initialises the
    /// module in this process (every in-process SoftHSM test starts with it).
    ///
    /// Its directory outlives the process (statics are never dropped); stores left by
    /// processes that are gone are deleted when the next one is made.
    pub fn shared() -> &'static SoftHsm {
        static SHARED: OnceLock<SoftHsm> = OnceLock::new();
        SHARED.get_or_init(|| {
            remove_stale_shared_stores();
            let dir = tempfile::Builder::new()
                .prefix(&format!("{SHARED_PREFIX}{}-", std::process::id()))
                .tempdir()
                .expect("create a temporary directory for SoftHSM");
            let store = Self::in_dir(dir);
            // Before any test can have loaded the module (they all come through here first),
            // so no thread is reading the environment for it at the same time.
            std::env::set_var(CONF_ENV, store.conf_path());
            store
        })
    }

    fn in_dir(dir: tempfile::TempDir) -> SoftHsm {
        let module = find_module();
        let tokens = dir.path().join("tokens");
        fs::create_dir(&tokens).expect("create the SoftHSM token directory");
        fs::create_dir(dir.path().join("pins")).expect("create the PIN directory");
        write_conf(&dir.path().join("softhsm2.conf"), &tokens);
        SoftHsm {
            dir,
            module,
            tokens: Mutex::new(BTreeMap::new()),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `softhsm2.conf` of this store.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// The environment variable a child process (e.g. the broker) needs to use this store.
    pub fn env(&self) -> (&'static str, PathBuf) {
        (CONF_ENV, self.conf_path())
    }

    /// The PKCS#11 module: `/usr/lib/softhsm/libsofthsm2.so`, or where Debian puts it
    /// (`/usr/lib/<triplet>/softhsm/`), or `$KEYBROKER_SOFTHSM_MODULE`.
    pub fn module_path(&self) -> &Path {
        &self.module
    }

    /// Lowercase hex SHA-256 of the module file, as the plugin's `module_sha256` pins it.
    pub fn module_sha256(&self) -> String {
        let bytes = fs::read(&self.module)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.module.display()));
        hex::encode(Sha256::digest(bytes))
    }

    /// The directory SoftHSM keeps its tokens in (one subdirectory per token).
    pub fn token_dir(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// Initialises a token labelled `label` (at most 32 bytes, unique in this store) with
    /// user PIN `pin`, and returns the path of a `0600` file holding the PIN and a newline.
    pub fn add_token(&self, label: &str, pin: &str) -> PathBuf {
        assert!(
            !label.is_empty() && label.len() <= 32,
            "a token label has 1 to 32 bytes: {label:?}"
        );
        let mut tokens = self.tokens.lock().unwrap();
        assert!(
            !tokens.contains_key(label),
            "token {label:?} exists already"
        );
        // The token is initialised in a store of its own, then moved in. softhsm2-util reads
        // every token of the store it is given, and fails ("Could not get info about the
        // token in slot …") when one of them is being rewritten by another process at that
        // moment: this process's module, or a pkcs11-tool run, working on another test's
        // token. A loaded machine, which stretches those writes, makes that likely.
        let staging = tempfile::Builder::new()
            .prefix("staging-")
            .tempdir_in(self.dir.path())
            .expect("create a staging directory for a new token");
        let staging_tokens = staging.path().join("tokens");
        fs::create_dir(&staging_tokens).expect("create the staging token directory");
        let staging_conf = staging.path().join("softhsm2.conf");
        write_conf(&staging_conf, &staging_tokens);
        let output = self
            .command("softhsm2-util")
            .env(CONF_ENV, &staging_conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", pin, "--so-pin", SO_PIN])
            .output();
        check("softhsm2-util --init-token", &output);
        let created = dir_names(&staging_tokens);
        let [dir_name] = <[OsString; 1]>::try_from(created)
            .unwrap_or_else(|c| panic!("expected one new token directory, found {c:?}"));
        // Atomic: the store's readers see the whole token or none of it.
        rename(
            &staging_tokens.join(&dir_name),
            &self.token_dir().join(&dir_name),
        );
        tokens.insert(
            label.to_owned(),
            Token {
                dir_name,
                pin: pin.to_owned(),
            },
        );
        let pin_file = self.dir.path().join("pins").join(format!("{label}.pin"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pin_file)
            .unwrap_or_else(|e| panic!("create {}: {e}", pin_file.display()));
        writeln!(file, "{pin}").expect("write the PIN file");
        pin_file
    }

    /// Moves the whole token directory away: every token of this store vanishes.
    pub fn hide_tokens(&self) {
        let _tokens = self.tokens.lock().unwrap();
        rename(&self.token_dir(), &self.dir.path().join("tokens.hidden"));
    }

    /// Undoes [`SoftHsm::hide_tokens`].
    pub fn restore_tokens(&self) {
        let _tokens = self.tokens.lock().unwrap();
        rename(&self.dir.path().join("tokens.hidden"), &self.token_dir());
    }

    /// Moves one token's directory away; the other tokens stay.
    pub fn hide_token(&self, label: &str) {
        let tokens = self.tokens.lock().unwrap();
        let token = token(&tokens, label);
        rename(
            &self.token_dir().join(&token.dir_name),
            &self.hidden_token_path(token),
        );
    }

    /// Undoes [`SoftHsm::hide_token`].
    pub fn restore_token(&self, label: &str) {
        let tokens = self.tokens.lock().unwrap();
        let token = token(&tokens, label);
        rename(
            &self.hidden_token_path(token),
            &self.token_dir().join(&token.dir_name),
        );
    }

    fn hidden_token_path(&self, token: &Token) -> PathBuf {
        let mut name = OsString::from("hidden-");
        name.push(&token.dir_name);
        self.dir.path().join(name)
    }

    /// Runs opensc's `pkcs11-tool --module <module> ARGS` against this store.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Output {
        self.command("pkcs11-tool")
            .arg("--module")
            .arg(&self.module)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run pkcs11-tool: {e}; {INSTALL_HINT}"))
    }

    /// [`SoftHsm::pkcs11_tool`], logged in to `token` as its user; panics unless it succeeds
    /// and returns its standard output.
    pub fn pkcs11_tool_on(&self, token: &str, args: &[&str]) -> String {
        let pin = self.pin_of(token);
        let mut all = vec!["--token-label", token, "--login", "--pin", &pin];
        all.extend_from_slice(args);
        let output = self.pkcs11_tool(&all);
        check(
            &format!("pkcs11-tool {}", args.join(" ")),
            &Ok(output.clone()),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Makes a sensitive, non-extractable AES-256 key in `token`.
    pub fn create_aes_key(&self, token: &str, label: &str, id_hex: &str) {
        self.pkcs11_tool_on(
            token,
            &[
                "--keygen",
                "--key-type",
                "aes:32",
                "--label",
                label,
                "--id",
                id_hex,
                "--sensitive",
            ],
        );
    }

    /// Makes an AES-128 key (the wrong type for `aes256-gcm96`, for refusal tests).
    pub fn create_aes128_key(&self, token: &str, label: &str, id_hex: &str) {
        self.pkcs11_tool_on(
            token,
            &[
                "--keygen",
                "--key-type",
                "aes:16",
                "--label",
                label,
                "--id",
                id_hex,
                "--sensitive",
            ],
        );
    }

    /// Makes an EC P-256 key pair (private and public key share `label` and `id_hex`).
    pub fn create_ec_p256_key_pair(&self, token: &str, label: &str, id_hex: &str) {
        self.create_key_pair(token, "EC:prime256v1", label, id_hex);
    }

    /// Makes an RSA key pair with a `bits`-bit modulus.
    pub fn create_rsa_key_pair(&self, token: &str, bits: u32, label: &str, id_hex: &str) {
        self.create_key_pair(token, &format!("rsa:{bits}"), label, id_hex);
    }

    fn create_key_pair(&self, token: &str, key_type: &str, label: &str, id_hex: &str) {
        self.pkcs11_tool_on(
            token,
            &[
                "--keypairgen",
                "--key-type",
                key_type,
                "--label",
                label,
                "--id",
                id_hex,
                "--sensitive",
            ],
        );
    }

    /// Every object of `token` visible to its logged-in user.
    pub fn objects(&self, token: &str) -> Vec<TokenObject> {
        parse_objects(&self.pkcs11_tool_on(token, &["--list-objects"]))
    }

    /// The objects of `token` whose `CKA_ID` is `id_hex` (lowercase hex).
    pub fn objects_with_id(&self, token: &str, id_hex: &str) -> Vec<TokenObject> {
        self.objects(token)
            .into_iter()
            .filter(|object| object.id.as_deref() == Some(id_hex))
            .collect()
    }

    fn pin_of(&self, token: &str) -> String {
        let tokens = self.tokens.lock().unwrap();
        self::token(&tokens, token).pin.clone()
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env(CONF_ENV, self.conf_path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }
}

impl Default for SoftHsm {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SoftHsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftHsm")
            .field("dir", &self.dir.path())
            .field("module", &self.module)
            .finish()
    }
}

/// A token label unique in this process and across processes running at once: `prefix`
/// (cut to fit), the process id and a counter, at most 32 bytes.
pub fn unique_label(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let suffix = format!(
        "-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut cut = prefix.len().min(32usize.saturating_sub(suffix.len()));
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &prefix[..cut])
}

const SHARED_PREFIX: &str = "keybroker-softhsm-shared-";

/// Deletes shared stores whose process has exited.
fn remove_stale_shared_stores() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(SHARED_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes a `softhsm2.conf` keeping tokens in `tokens`.
fn write_conf(path: &Path, tokens: &Path) {
    let conf = format!(
        "# Written by keybroker-softhsm-harness.\n\
         directories.tokendir = {}\n\
         objectstore.backend = file\n\
         log.level = ERROR\n\
         slots.removable = false\n",
        tokens.display()
    );
    fs::write(path, conf).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The names of the entries of a SoftHSM token directory (one per token).
fn dir_names(directory: &Path) -> Vec<OsString> {
    fs::read_dir(directory)
        .unwrap_or_else(|e| {
            panic!(
                "list the SoftHSM token directory {}: {e}",
                directory.display()
            )
        })
        .map(|entry| entry.expect("read the SoftHSM token directory").file_name())
        .collect()
}

fn token<'a>(tokens: &'a BTreeMap<String, Token>, label: &str) -> &'a Token {
    tokens
        .get(label)
        .unwrap_or_else(|| panic!("no token {label:?} was added to this store"))
}

fn rename(from: &Path, to: &Path) {
    fs::rename(from, to)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", from.display(), to.display()));
}

/// Panics with the program's output unless it succeeded.
fn check(what: &str, output: &std::io::Result<Output>) {
    match output {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("{what}: program not found; {INSTALL_HINT}")
        }
        Err(error) => panic!("{what} could not run: {error}"),
    }
}

/// The SoftHSM2 PKCS#11 module.
fn find_module() -> PathBuf {
    if let Some(path) = std::env::var_os(MODULE_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{MODULE_ENV}={} is not a file",
            path.display()
        );
        return path;
    }
    let fixed = ["/usr/lib/softhsm", "/usr/local/lib/softhsm"]
        .into_iter()
        .map(|dir| Path::new(dir).join("libsofthsm2.so"));
    // Debian ships it in /usr/lib/<triplet>/softhsm/.
    let multiarch = fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("softhsm").join("libsofthsm2.so"));
    match fixed.chain(multiarch).find(|path| path.is_file()) {
        Some(path) => path,
        None => panic!(
            "the SoftHSM2 PKCS#11 module (libsofthsm2.so) was not found in /usr/lib/softhsm \
             nor /usr/lib/*/softhsm: {INSTALL_HINT}, or set {MODULE_ENV}"
        ),
    }
}

/// Parses `pkcs11-tool --list-objects` output: a heading line per object (not indented),
/// then indented `name: value` lines.
fn parse_objects(listing: &str) -> Vec<TokenObject> {
    let mut objects: Vec<TokenObject> = Vec::new();
    for line in listing.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            objects.push(TokenObject {
                kind: line.trim().to_owned(),
                label: None,
                id: None,
            });
            continue;
        }
        let Some(object) = objects.last_mut() else {
            continue;
        };
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        match name.trim() {
            "label" => object.label = Some(value),
            "ID" => object.id = Some(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keys_listing_and_hiding() {
        let hsm = SoftHsm::new();
        assert!(hsm.module_path().is_file());
        assert_eq!(hsm.module_sha256().len(), 64);
        let conf = fs::read_to_string(hsm.conf_path()).unwrap();
        assert!(conf.contains(&format!(
            "directories.tokendir = {}",
            hsm.token_dir().display()
        )));
        assert_eq!(hsm.env(), (CONF_ENV, hsm.conf_path()));

        let label = unique_label("harness");
        let pin_file = hsm.add_token(&label, "1234");
        assert_eq!(fs::read_to_string(&pin_file).unwrap(), "1234\n");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&pin_file).unwrap().permissions().mode() & 0o777,
            0o600
        );

        hsm.create_aes_key(&label, "aes", "a1");
        hsm.create_ec_p256_key_pair(&label, "ec", "e1");
        let objects = hsm.objects(&label);
        assert_eq!(objects.len(), 3, "{objects:?}");
        let aes = hsm.objects_with_id(&label, "a1");
        assert_eq!(aes.len(), 1);
        assert!(aes[0].kind.starts_with("Secret Key Object; AES"), "{aes:?}");
        assert_eq!(aes[0].label.as_deref(), Some("aes"));
        assert_eq!(hsm.objects_with_id(&label, "e1").len(), 2);
        assert!(hsm.objects_with_id(&label, "ff").is_empty());

        // A hidden token is gone for pkcs11-tool; restored, it is back.
        hsm.hide_token(&label);
        let output = hsm.pkcs11_tool(&["--token-label", &label, "--list-objects"]);
        assert!(!output.status.success());
        hsm.restore_token(&label);
        assert_eq!(hsm.objects(&label).len(), 3);
        hsm.hide_tokens();
        assert!(!hsm.token_dir().exists());
        hsm.restore_tokens();
        assert_eq!(hsm.objects(&label).len(), 3);

        let dir = hsm.dir().to_path_buf();
        drop(hsm);
        assert!(!dir.exists());
    }

    #[test]
    fn unique_labels_fit_a_token() {
        let a = unique_label(&"x".repeat(40));
        let b = unique_label(&"x".repeat(40));
        assert_ne!(a, b);
        assert!(a.len() <= 32, "{a}");
        assert!(unique_label("short").starts_with("short-"));
    }

    #[test]
    fn listing_is_parsed() {
        let listing = "Secret Key Object; AES length 32\n  label:      k\n  ID:         0A0b\n  \
                       Usage:      encrypt\nPublic Key Object; EC  EC_POINT 256 bits\n  \
                       EC_POINT:   04ab\n  label:      e\n";
        assert_eq!(
            parse_objects(listing),
            vec![
                TokenObject {
                    kind: "Secret Key Object; AES length 32".into(),
                    label: Some("k".into()),
                    id: Some("0a0b".into()),
                },
                TokenObject {
                    kind: "Public Key Object; EC  EC_POINT 256 bits".into(),
                    label: Some("e".into()),
                    id: None,
                },
            ]
        );
    }
}
