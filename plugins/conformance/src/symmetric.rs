//! Symmetric keys (`aes256-gcm96`): envelope and direct encryption.

use keybroker_plugin_abi::{
    abi_stable::std_types::RVec, capability, key_type, BackendBox, ErrorKind, SignRequest,
    VerifyRequest,
};

use crate::calls::BatchEntry;
use crate::scope::{
    decrypt_request, encrypt_request, made_up_references, random_iv, rstring, Scope,
};
use crate::Options;

/// Largest `max_payload` the suite allocates for the full round trip.
const MAX_ALLOCATED_PAYLOAD: u64 = 64 << 20;

/// Everything about an `aes256-gcm96` key: round trips (with AAD, empty, a 32-byte DEK, up
/// to `max_payload`), authentication failures, tenant isolation, made-up references, IVs,
/// batches, refusal of asymmetric operations, and deletion.
pub fn check_symmetric(backend: &BackendBox, options: &Options) {
    let scope = Scope::for_backend(backend, format!("key type {}", key_type::AES256_GCM96));
    let info = scope.ok("info()", backend.info());
    let (a, b) = (options.tenant_a.as_str(), options.tenant_b.as_str());
    let reference = scope.create(backend, a, key_type::AES256_GCM96);

    let encrypt = |what: &str, plaintext: &[u8], aad: &[u8], iv: &[u8]| {
        scope.ok(
            what,
            backend.encrypt(encrypt_request(a, &reference, plaintext, aad, iv)),
        )
    };
    let decrypt = |what: &str, ciphertext: &[u8], aad: &[u8]| {
        scope.ok(
            what,
            backend.decrypt(decrypt_request(a, &reference, ciphertext, aad)),
        )
    };

    // Round trips.
    let plaintext = b"keybroker conformance: the quick brown fox".as_slice();
    let aad = b"binding and associated data".as_slice();
    let ciphertext = encrypt(
        "encrypt with a 12-byte IV and AAD",
        plaintext,
        aad,
        &random_iv(),
    );
    scope.check(
        !ciphertext
            .windows(plaintext.len())
            .any(|window| window == plaintext),
        "the ciphertext not to contain the plaintext",
    );
    let decrypted = decrypt("decrypt with the same AAD", &ciphertext, aad);
    scope.check(
        decrypted.as_slice() == plaintext,
        "decrypt to give the plaintext back",
    );

    let empty = encrypt("encrypt an empty plaintext", b"", aad, &random_iv());
    let decrypted = decrypt("decrypt an empty plaintext", &empty, aad);
    scope.check(
        decrypted.is_empty(),
        "an empty plaintext to decrypt to an empty plaintext",
    );

    let dek: [u8; 32] = rand::random();
    let wrapped = encrypt("wrap a 32-byte data key (no AAD)", &dek, b"", &random_iv());
    let unwrapped = decrypt("unwrap a 32-byte data key", &wrapped, b"");
    scope.check(
        unwrapped.as_slice() == dek,
        "a 32-byte data key to round-trip",
    );
    if info.capabilities & capability::DIRECT != 0 {
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let size = data
            .len()
            .min(usize::try_from(info.max_payload).unwrap_or(usize::MAX));
        let sealed = encrypt(
            "encrypt 4 KiB of data (direct mode)",
            &data[..size],
            aad,
            &random_iv(),
        );
        let opened = decrypt("decrypt 4 KiB of data (direct mode)", &sealed, aad);
        scope.check(
            opened.as_slice() == &data[..size],
            "4 KiB of data to round-trip",
        );
    }

    // Authentication: AAD, every bit, truncation.
    if options.authenticates_aad {
        for wrong in [&b"another binding"[..], b""] {
            scope.fails(
                format!(
                    "decrypt with the wrong AAD {:?}",
                    String::from_utf8_lossy(wrong)
                ),
                ErrorKind::INVALID_CIPHERTEXT,
                backend.decrypt(decrypt_request(a, &reference, &ciphertext, wrong)),
            );
        }
    }
    for index in 0..ciphertext.len() {
        let mut tampered = ciphertext.to_vec();
        tampered[index] ^= 1 << (index % 8);
        scope.fails(
            format!(
                "decrypt with bit {} of byte {index} (of {}) flipped",
                index % 8,
                ciphertext.len()
            ),
            ErrorKind::INVALID_CIPHERTEXT,
            backend.decrypt(decrypt_request(a, &reference, &tampered, aad)),
        );
    }
    let mut lengths = vec![0, 1, ciphertext.len() / 2, ciphertext.len() - 1];
    lengths.dedup();
    for len in lengths {
        scope.fails(
            format!(
                "decrypt a ciphertext truncated to {len} of {} bytes",
                ciphertext.len()
            ),
            ErrorKind::INVALID_CIPHERTEXT,
            backend.decrypt(decrypt_request(a, &reference, &ciphertext[..len], aad)),
        );
    }
    let mut extended = ciphertext.to_vec();
    extended.push(0);
    scope.fails(
        "decrypt a ciphertext with one byte appended",
        ErrorKind::INVALID_CIPHERTEXT,
        backend.decrypt(decrypt_request(a, &reference, &extended, aad)),
    );
    let other = scope.create(backend, a, key_type::AES256_GCM96);
    scope.check(other != reference, "two keys to have different references");
    scope.fails(
        "decrypt under another key of the same tenant",
        ErrorKind::INVALID_CIPHERTEXT,
        backend.decrypt(decrypt_request(a, &other, &ciphertext, aad)),
    );

    // Tenant isolation and made-up references.
    scope.not_found_for(
        "encrypt with tenant A's key as tenant B",
        a,
        backend.encrypt(encrypt_request(b, &reference, plaintext, aad, &random_iv())),
    );
    scope.not_found_for(
        "decrypt with tenant A's key as tenant B",
        a,
        backend.decrypt(decrypt_request(b, &reference, &ciphertext, aad)),
    );
    for made_up in made_up_references(&reference) {
        scope.fails(
            format!("encrypt with the made-up reference {made_up:?}"),
            ErrorKind::KEY_NOT_FOUND,
            backend.encrypt(encrypt_request(a, &made_up, plaintext, aad, &random_iv())),
        );
        scope.fails(
            format!("decrypt with the made-up reference {made_up:?}"),
            ErrorKind::KEY_NOT_FOUND,
            backend.decrypt(decrypt_request(a, &made_up, &ciphertext, aad)),
        );
    }

    // Payload limit.
    if options.max_payload_round_trip {
        scope.check(
            info.max_payload <= MAX_ALLOCATED_PAYLOAD,
            format!(
                "max_payload ({}) at most {MAX_ALLOCATED_PAYLOAD} bytes for the round trip \
                 (set Options::max_payload_round_trip = false for larger limits)",
                info.max_payload
            ),
        );
        let largest = usize::try_from(info.max_payload).unwrap_or(usize::MAX);
        let data: Vec<u8> = (0..largest).map(|i| (i % 253) as u8).collect();
        let sealed = encrypt(
            &format!("encrypt max_payload = {largest} bytes"),
            &data,
            b"",
            &random_iv(),
        );
        let opened = decrypt(
            &format!("decrypt max_payload = {largest} bytes"),
            &sealed,
            b"",
        );
        scope.check(
            opened.as_slice() == data.as_slice(),
            "a max_payload plaintext to round-trip",
        );
        drop((sealed, opened));
        let mut too_large = data;
        too_large.push(0);
        scope.fails(
            format!("encrypt max_payload + 1 = {} bytes", too_large.len()),
            ErrorKind::PAYLOAD_TOO_LARGE,
            backend.encrypt(encrypt_request(
                a,
                &reference,
                &too_large,
                b"",
                &random_iv(),
            )),
        );
    }

    // IVs: the same plaintext under two IVs gives two ciphertexts.
    let first = encrypt("encrypt under IV 1", plaintext, aad, &random_iv());
    let second = encrypt("encrypt under IV 2", plaintext, aad, &random_iv());
    scope.check(
        first != second,
        "two encryptions of the same plaintext with different IVs to differ",
    );

    for entry in BatchEntry::ALL {
        check_batches(&scope, backend, options, &reference, entry);
    }

    // Asymmetric operations on a symmetric key.
    let digest = RVec::from(vec![7u8; 32]);
    scope.fails(
        "sign with an aes256-gcm96 key",
        ErrorKind::INVALID_REQUEST,
        backend.sign(SignRequest {
            tenant_id: rstring(a),
            key_reference: rstring(&reference),
            digest: digest.clone(),
            hash_algorithm: rstring("sha2-256"),
            signature_algorithm: rstring("pss"),
        }),
    );
    scope.fails(
        "verify with an aes256-gcm96 key",
        ErrorKind::INVALID_REQUEST,
        backend.verify(VerifyRequest {
            tenant_id: rstring(a),
            key_reference: rstring(&reference),
            digest,
            hash_algorithm: rstring("sha2-256"),
            signature_algorithm: rstring(""),
            signature: RVec::from(vec![1u8; 64]),
        }),
    );
    scope.fails(
        "public_key of an aes256-gcm96 key",
        ErrorKind::INVALID_REQUEST,
        backend.public_key(rstring(a), rstring(&reference)),
    );

    for key in [&reference, &other] {
        scope.ok(
            "delete_key of a created key",
            backend.delete_key(rstring(a), rstring(key)),
        );
    }
}

/// Batches through `entry`: one result per item, in order, a bad item failing alone.
fn check_batches(
    scope: &Scope,
    backend: &BackendBox,
    options: &Options,
    reference: &str,
    entry: BatchEntry,
) {
    let (a, b) = (options.tenant_a.as_str(), options.tenant_b.as_str());
    let plaintexts: [&[u8]; 4] = [b"first", b"second (tenant B)", b"third", b""];
    let requests: Vec<_> = plaintexts
        .iter()
        .enumerate()
        .map(|(index, plaintext)| {
            let tenant = if index == 1 { b } else { a };
            encrypt_request(tenant, reference, plaintext, b"batch", &random_iv())
        })
        .collect();
    let results = entry.encrypt(backend, requests);
    scope.check(
        results.len() == plaintexts.len(),
        format!(
            "encrypt_batch ({entry:?}) of {} items to give {} results, got {}",
            plaintexts.len(),
            plaintexts.len(),
            results.len()
        ),
    );
    let mut ciphertexts = Vec::new();
    for (index, result) in results.into_iter().enumerate() {
        if index == 1 {
            scope.fails(
                format!("encrypt_batch ({entry:?}) item 1 (tenant B)"),
                ErrorKind::KEY_NOT_FOUND,
                result,
            );
        } else {
            ciphertexts.push((
                index,
                scope.ok(format!("encrypt_batch ({entry:?}) item {index}"), result),
            ));
        }
    }

    // Decrypt them back with a tampered item in the middle.
    let mut requests = Vec::new();
    let mut expected: Vec<Option<&[u8]>> = Vec::new();
    for (position, (index, ciphertext)) in ciphertexts.iter().enumerate() {
        if position == 1 {
            let mut tampered = ciphertext.to_vec();
            if let Some(last) = tampered.last_mut() {
                *last ^= 0x80;
            }
            requests.push(decrypt_request(a, reference, &tampered, b"batch"));
            expected.push(None);
        }
        requests.push(decrypt_request(a, reference, ciphertext, b"batch"));
        expected.push(Some(plaintexts[*index]));
    }
    let results = entry.decrypt(backend, requests);
    scope.check(
        results.len() == expected.len(),
        format!(
            "decrypt_batch ({entry:?}) of {} items to give {} results, got {}",
            expected.len(),
            expected.len(),
            results.len()
        ),
    );
    for (index, (result, expected)) in results.into_iter().zip(expected).enumerate() {
        match expected {
            Some(plaintext) => {
                let decrypted = scope.ok(format!("decrypt_batch ({entry:?}) item {index}"), result);
                scope.check(
                    decrypted.as_slice() == plaintext,
                    format!("decrypt_batch ({entry:?}) item {index} to give its own plaintext back, in order"),
                );
            }
            None => {
                scope.fails(
                    format!("decrypt_batch ({entry:?}) item {index} (tampered)"),
                    ErrorKind::INVALID_CIPHERTEXT,
                    result,
                );
            }
        }
    }
}
