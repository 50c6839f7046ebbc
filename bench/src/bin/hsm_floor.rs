//! The HSM benchmark floor: the least a server can do to answer a Vault transit encrypt
//! with a key that never leaves a PKCS#11 token, so `bench/run` (suite `hsm`) can say how
//! close keybroker's direct mode gets to it.
//!
//! Per request it parses the JSON body, base64-decodes, takes a logged-in session from a
//! pool of `--sessions` (as the PKCS#11 plugin does, `max_sessions`), and on a blocking
//! thread (as the broker calls plugins) makes the plugin's direct-mode calls:
//! `C_EncryptInit` with `CKM_AES_GCM` (a 96-bit IV from a counter, a fixed AAD the size of
//! the broker's, a 128-bit tag) and `C_Encrypt` (cryptoki's `Session::encrypt`, as the
//! plugin calls it: a length query, then the call) on an AES-256 token key (sensitive, not
//! extractable); it answers in the Vault wire format with `vault:v1:` + base64 of the
//! plugin's blob, `0x01 ‖ IV ‖ ciphertext ‖ tag`. No auth, no policy, no key lookup, no
//! audit, no storage, no caching: whatever keybroker spends beyond this is its own
//! overhead. The key is found by its label on the token, or generated there at start-up.
//!
//! Run (normally started by `bench/run`, pinned to one core with `taskset`):
//! `SOFTHSM2_CONF=… keybroker-bench-hsm-floor --module /usr/lib/softhsm/libsofthsm2.so
//! --token-label bench --pin-file pin --sessions 8 --listen 127.0.0.1:8301`

use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Parser;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use rand::RngCore;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// Vault's ciphertext prefix for key version 1.
const CIPHERTEXT_PREFIX: &str = "vault:v1:";
/// First byte of the PKCS#11 plugin's ciphertext blob (`0x01 ‖ IV ‖ ciphertext ‖ tag`).
const BLOB_FORMAT: u8 = 0x01;
/// AES-GCM IV length (96 bits).
const IV_LEN: usize = 12;
/// AES-GCM tag length in bits.
const TAG_BITS: u64 = 128;

#[derive(Parser)]
#[command(about = "Minimal Vault-transit-compatible server over a PKCS#11 token: the HSM floor")]
struct Args {
    /// The PKCS#11 module.
    #[arg(long)]
    module: PathBuf,
    /// Label of the (initialised) token holding the key.
    #[arg(long)]
    token_label: String,
    /// File holding the token's user PIN (one trailing newline is ignored).
    #[arg(long)]
    pin_file: PathBuf,
    /// Label of the AES-256 key on the token; generated if there is none.
    #[arg(long, default_value = "keybroker-bench-hsm-floor")]
    key_label: String,
    /// Logged-in sessions in the pool (the plugin's `max_sessions`).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    sessions: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8301")]
    listen: SocketAddr,
}

fn main() -> ExitCode {
    match serve(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(args: Args) -> Result<(), Box<dyn Error>> {
    let pin = read_pin(&args.pin_file)?;
    let token = Token::open(
        &args.module,
        &args.token_label,
        &pin,
        &args.key_label,
        usize::from(args.sessions),
    )?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    axum::serve(listener, router(Arc::new(token))).await?;
    Ok(())
}

/// The user PIN from a file, without one trailing newline.
fn read_pin(path: &Path) -> Result<AuthPin, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the PIN file {}: {e}", path.display()))?;
    let pin = text.strip_suffix('\n').unwrap_or(&text);
    if pin.is_empty() {
        return Err(format!("the PIN file {} is empty", path.display()).into());
    }
    Ok(AuthPin::from(pin))
}

/// The token's key and a pool of logged-in sessions on it.
struct Token {
    key: ObjectHandle,
    /// Idle sessions; `free` has one permit per session in here.
    sessions: Mutex<Vec<Session>>,
    free: Arc<Semaphore>,
    /// Fixed first 4 bytes of every IV (random per process), then a counter.
    iv_prefix: [u8; 4],
    iv_counter: AtomicU64,
    aad: Vec<u8>,
}

impl Token {
    /// Loads `module`, opens `sessions` sessions on the token labelled `token_label`, logs
    /// them in and finds (or generates) the AES-256 key labelled `key_label`.
    fn open(
        module: &Path,
        token_label: &str,
        pin: &AuthPin,
        key_label: &str,
        sessions: usize,
    ) -> Result<Token, Box<dyn Error>> {
        let context = Pkcs11::new(module)
            .map_err(|e| format!("cannot load the PKCS#11 module {}: {e}", module.display()))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            // Already initialised in this process (only tests open a token twice).
            Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(format!("C_Initialize: {e}").into()),
        }
        let mut slot = None;
        for candidate in context.get_slots_with_initialized_token()? {
            if context.get_token_info(candidate)?.label().trim_end() == token_label {
                slot = Some(candidate);
                break;
            }
        }
        let slot = slot.ok_or_else(|| format!("no initialised token labelled {token_label:?}"))?;
        let mut pool = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let session = context.open_rw_session(slot)?;
            // A login is per application and token: the first one logs every session in.
            match session.login(UserType::User, Some(pin)) {
                Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(format!("C_Login on token {token_label:?}: {e}").into()),
            }
            pool.push(session);
        }
        let key = find_or_generate_key(&pool[0], key_label)?;
        let mut iv_prefix = [0u8; 4];
        rand::thread_rng().fill_bytes(&mut iv_prefix);
        Ok(Token {
            key,
            sessions: Mutex::new(pool),
            free: Arc::new(Semaphore::new(sessions)),
            iv_prefix,
            iv_counter: AtomicU64::new(0),
            aad: binding_shaped_aad(),
        })
    }

    fn next_iv(&self) -> [u8; IV_LEN] {
        let mut iv = [0u8; IV_LEN];
        iv[..4].copy_from_slice(&self.iv_prefix);
        iv[4..].copy_from_slice(
            &self
                .iv_counter
                .fetch_add(1, Ordering::Relaxed)
                .to_be_bytes(),
        );
        iv
    }

    /// Runs `operation` with an idle session on a blocking thread, waiting for one if
    /// every session is busy.
    async fn with_session<T: Send + 'static>(
        self: &Arc<Self>,
        operation: impl FnOnce(&Session, &Token) -> T + Send + 'static,
    ) -> Result<T, &'static str> {
        let permit = Arc::clone(&self.free)
            .acquire_owned()
            .await
            .map_err(|_| "session pool closed")?;
        let token = Arc::clone(self);
        // The session goes back to the pool, and the permit is released, on the blocking
        // thread: a request cancelled while it waits (a client that hung up) loses nothing.
        let task = tokio::task::spawn_blocking(move || {
            let session = token
                .sessions
                .lock()
                .map_err(|_| "session pool poisoned")?
                .pop()
                .ok_or("session pool empty")?;
            let output = operation(&session, &token);
            token
                .sessions
                .lock()
                .map_err(|_| "session pool poisoned")?
                .push(session);
            drop(permit);
            Ok(output)
        });
        task.await.map_err(|_| "PKCS#11 call failed")?
    }
}

/// A fixed AAD laid out as the one keybroker passes in direct mode (57 bytes): its binding
/// (format 1, a tenant id, a key id, version 1) and the caller's empty associated data, each
/// as `u32 length ‖ bytes`. Fixed, so ciphertexts still decrypt after a restart.
fn binding_shaped_aad() -> Vec<u8> {
    let mut aad = Vec::with_capacity(57);
    for field in [
        &[1u8][..],
        &[0xa1; 16],
        &[0xb2; 16],
        &1u32.to_be_bytes(),
        &[],
    ] {
        aad.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(field);
    }
    aad
}

/// The AES-256 secret key labelled `label`, generated on the token if there is none.
fn find_or_generate_key(session: &Session, label: &str) -> Result<ObjectHandle, Box<dyn Error>> {
    let label = label.as_bytes().to_vec();
    let found = session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.clone()),
    ])?;
    if let Some(key) = found.first() {
        return Ok(*key);
    }
    let key = session.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::ValueLen(32.into()),
            Attribute::Label(label),
        ],
    )?;
    Ok(key)
}

fn router(token: Arc<Token>) -> Router {
    Router::new()
        .route("/v1/sys/health", get(|| async { axum::Json(json!({})) }))
        .route("/v1/transit/encrypt/{name}", post(encrypt).put(encrypt))
        .route("/v1/transit/decrypt/{name}", post(decrypt).put(decrypt))
        .with_state(token)
}

/// Vault transit API: encrypt (`{"plaintext": base64}` → `{"data":{"ciphertext","key_version"}}`).
async fn encrypt(State(token): State<Arc<Token>>, body: Bytes) -> Response {
    let Some(plaintext) =
        string_field(&body, "plaintext").and_then(|b64| STANDARD.decode(b64).ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"plaintext\": \"<base64>\"}",
        );
    };
    let sealed = token
        .with_session(move |session, token| {
            let mut iv = token.next_iv();
            let params = GcmParams::new(&mut iv, &token.aad, TAG_BITS.into())?;
            let sealed = session.encrypt(&Mechanism::AesGcm(params), token.key, &plaintext)?;
            let mut framed = Vec::with_capacity(1 + IV_LEN + sealed.len());
            framed.push(BLOB_FORMAT);
            framed.extend_from_slice(&iv);
            framed.extend_from_slice(&sealed);
            Ok::<_, Pkcs11Error>(framed)
        })
        .await;
    match sealed {
        Ok(Ok(framed)) => {
            let ciphertext = format!("{CIPHERTEXT_PREFIX}{}", STANDARD.encode(framed));
            axum::Json(json!({"data": {"ciphertext": ciphertext, "key_version": 1}}))
                .into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Vault transit API: decrypt (`{"ciphertext": "vault:v1:…"}` → `{"data":{"plaintext"}}`).
/// Only for checking the floor's answers: the benchmark measures encrypt.
async fn decrypt(State(token): State<Arc<Token>>, body: Bytes) -> Response {
    let Some(framed) = string_field(&body, "ciphertext")
        .and_then(|text| text.strip_prefix(CIPHERTEXT_PREFIX).map(str::to_owned))
        .and_then(|b64| STANDARD.decode(b64).ok())
        .filter(|framed| framed.len() > IV_LEN && framed[0] == BLOB_FORMAT)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"ciphertext\": \"vault:v1:<base64>\"}",
        );
    };
    let opened = token
        .with_session(move |session, token| {
            let (iv, sealed) = framed[1..].split_at(IV_LEN);
            let mut iv = iv.to_vec();
            let params = GcmParams::new(&mut iv, &token.aad, TAG_BITS.into())?;
            session.decrypt(&Mechanism::AesGcm(params), token.key, sealed)
        })
        .await;
    match opened {
        Ok(Ok(plaintext)) => {
            axum::Json(json!({"data": {"plaintext": STANDARD.encode(plaintext)}})).into_response()
        }
        Ok(Err(_)) => error(StatusCode::BAD_REQUEST, "ciphertext does not authenticate"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The string value of `field` in a JSON object body, if there is one.
fn string_field(body: &[u8], field: &str) -> Option<String> {
    match serde_json::from_slice::<Value>(body)
        .ok()?
        .get_mut(field)?
        .take()
    {
        Value::String(text) => Some(text),
        _ => None,
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    // The first failures go to the log: a bench run with errors must say why.
    static LOGGED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    if LOGGED.fetch_add(1, Ordering::Relaxed) < 5 {
        eprintln!("hsm floor: answering {status}: {message}");
    }
    (status, axum::Json(json!({"errors": [message]}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use keybroker_softhsm_harness::{unique_label, SoftHsm};
    use tower::ServiceExt;

    async fn call(router: &Router, path: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// One test: the module is initialised once per process, and every token is made
    /// before that (SoftHSM lists no token initialised after `C_Initialize`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn encrypts_on_the_token_with_a_key_that_stays_there() {
        let hsm = SoftHsm::shared();
        let label = unique_label("floor");
        let pin_file = hsm.add_token(&label, "4321");
        let pin = read_pin(&pin_file).unwrap();
        let token = Token::open(hsm.module_path(), &label, &pin, "floor-key", 2).unwrap();
        assert_eq!(
            token.aad.len(),
            57,
            "the size of keybroker's direct-mode AAD"
        );
        let key = token.key;
        let router = router(Arc::new(token));

        // Answers in Vault's format, IV ‖ ciphertext ‖ tag, each IV new; round trip.
        let plaintext = STANDARD.encode([7u8; 64]);
        let mut ivs = std::collections::HashSet::new();
        for _ in 0..4 {
            let (status, encrypted) = call(
                &router,
                "/v1/transit/encrypt/bench",
                json!({"plaintext": plaintext}),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{encrypted}");
            assert_eq!(encrypted["data"]["key_version"], 1);
            let ciphertext = encrypted["data"]["ciphertext"].as_str().unwrap();
            let framed = STANDARD
                .decode(ciphertext.strip_prefix("vault:v1:").unwrap())
                .unwrap();
            assert_eq!(framed.len(), 1 + IV_LEN + 64 + 16);
            assert_eq!(framed[0], BLOB_FORMAT);
            assert!(ivs.insert(framed[1..=IV_LEN].to_vec()), "IV reused");
            let (status, decrypted) = call(
                &router,
                "/v1/transit/decrypt/bench",
                json!({"ciphertext": ciphertext}),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(decrypted, json!({"data": {"plaintext": plaintext}}));
        }

        // More requests at once than sessions: they wait for one.
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (router, plaintext) = (router.clone(), plaintext.clone());
                tokio::spawn(async move {
                    let body = json!({"plaintext": plaintext});
                    call(&router, "/v1/transit/encrypt/bench", body).await.0
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), StatusCode::OK);
        }

        // Forged or malformed input is a 400.
        let mut forged = vec![BLOB_FORMAT];
        forged.extend_from_slice(&[0u8; 40]);
        let forged = format!("vault:v1:{}", STANDARD.encode(forged));
        for (path, body) in [
            (
                "/v1/transit/encrypt/bench",
                json!({"plaintext": "not base64!"}),
            ),
            ("/v1/transit/decrypt/bench", json!({"ciphertext": forged})),
        ] {
            let (status, answer) = call(&router, path, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
            assert!(answer["errors"].is_array());
        }

        // The key is a token key, sensitive, not extractable, and found again by label.
        let objects = hsm.objects(&label);
        assert_eq!(
            objects
                .iter()
                .filter(|o| o.label.as_deref() == Some("floor-key"))
                .count(),
            1,
            "{objects:?}"
        );
        let again = Token::open(hsm.module_path(), &label, &pin, "floor-key", 1).unwrap();
        assert_eq!(again.key, key);
        let session = again.sessions.lock().unwrap().pop().unwrap();
        let attributes = session
            .get_attributes(
                key,
                &[
                    cryptoki::object::AttributeType::Token,
                    cryptoki::object::AttributeType::Sensitive,
                    cryptoki::object::AttributeType::Extractable,
                ],
            )
            .unwrap();
        assert_eq!(
            attributes,
            vec![
                Attribute::Token(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false)
            ]
        );
    }
}
