//! Row decoding shared by the SQLite and Postgres adapters: the same columns, the same
//! checks, one text. [`row_decoders!`] defines the helpers in each adapter's module for its
//! row type; they call that module's `map_error`.

/// Defines `corrupt`, `get`, the id and number conversions, `to_json`/`json_column`, one
/// `*_from_row` decoder per record type, `optional_record`/`all_records` (run a query and
/// decode its rows) and `execute_with_id`, for rows of type `$row` of database `$db`.
macro_rules! row_decoders {
    ($row:ty, $db:ty) => {
        /// A query of this engine, with its arguments bound.
        type BoundQuery<'q> = sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>;

        /// A query of this engine returning one column of type `O`, with its arguments bound.
        type BoundScalar<'q, O> =
            sqlx::query::QueryScalar<'q, $db, O, <$db as sqlx::Database>::Arguments<'q>>;

        /// Runs `query`, decoding the row it may return with `decode`.
        async fn optional_record<T>(
            pool: &sqlx::Pool<$db>,
            query: BoundQuery<'_>,
            decode: fn(&$row) -> Result<T, StoreError>,
        ) -> Result<Option<T>, StoreError> {
            let row = query.fetch_optional(pool).await.map_err(map_error)?;
            row.as_ref().map(decode).transpose()
        }

        /// Runs `query`, decoding every row it returns with `decode`.
        async fn all_records<T>(
            pool: &sqlx::Pool<$db>,
            query: BoundQuery<'_>,
            decode: fn(&$row) -> Result<T, StoreError>,
        ) -> Result<Vec<T>, StoreError> {
            let rows = query.fetch_all(pool).await.map_err(map_error)?;
            rows.iter().map(decode).collect()
        }

        /// Runs `statement`, whose one argument is `id`, in `tx`; its number of rows
        /// affected.
        async fn execute_with_id(
            tx: &mut sqlx::Transaction<'_, $db>,
            statement: &'static str,
            id: &str,
        ) -> Result<u64, StoreError> {
            let result = sqlx::query(statement)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(map_error)?;
            Ok(result.rows_affected())
        }

        fn corrupt(what: &str) -> StoreError {
            StoreError::Corrupt(what.to_owned())
        }

        fn tenant_id(row: &$row, column: &str) -> Result<TenantId, StoreError> {
            let text: String = row.try_get(column).map_err(map_error)?;
            TenantId::parse(&text).ok_or_else(|| corrupt(column))
        }

        fn key_id(row: &$row, column: &str) -> Result<KeyId, StoreError> {
            let text: String = row.try_get(column).map_err(map_error)?;
            KeyId::parse(&text).ok_or_else(|| corrupt(column))
        }

        fn mount_id(row: &$row, column: &str) -> Result<MountId, StoreError> {
            let text: String = row.try_get(column).map_err(map_error)?;
            MountId::parse(&text).ok_or_else(|| corrupt(column))
        }

        fn get<'r, T>(row: &'r $row, column: &str) -> Result<T, StoreError>
        where
            T: sqlx::Decode<'r, $db> + sqlx::Type<$db>,
        {
            row.try_get(column).map_err(map_error)
        }

        fn to_u32(value: i64, what: &str) -> Result<u32, StoreError> {
            u32::try_from(value).map_err(|_| corrupt(what))
        }

        fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
            u64::try_from(value).map_err(|_| corrupt(what))
        }

        fn to_i64(value: u64) -> i64 {
            i64::try_from(value).unwrap_or(i64::MAX)
        }

        fn tenant_from_row(row: &$row) -> Result<TenantRecord, StoreError> {
            Ok(TenantRecord {
                id: tenant_id(row, "id")?,
                name: get(row, "name")?,
                created_at: get(row, "created_at")?,
            })
        }

        fn mount_from_row(row: &$row) -> Result<MountRecord, StoreError> {
            let config: String = get(row, "config")?;
            Ok(MountRecord {
                id: mount_id(row, "id")?,
                tenant: tenant_id(row, "tenant_id")?,
                path: get(row, "path")?,
                kind: get(row, "kind")?,
                description: get(row, "description")?,
                config: serde_json::from_str(&config).map_err(|_| corrupt("mounts.config"))?,
                created_at: get(row, "created_at")?,
            })
        }

        fn entry_from_row(row: &$row) -> Result<MountEntry, StoreError> {
            let value: String = get(row, "value")?;
            Ok(MountEntry {
                value: serde_json::from_str(&value).map_err(|_| corrupt("mount_entries.value"))?,
                version: to_u64(get(row, "version")?, "mount_entries.version")?,
            })
        }

        fn wrapped_response_from_row(row: &$row) -> Result<WrappedResponseRecord, StoreError> {
            Ok(WrappedResponseRecord {
                hash: get(row, "hash")?,
                id: get(row, "id")?,
                tenant: tenant_id(row, "tenant_id")?,
                accessor: get(row, "accessor")?,
                created_at: get(row, "created_at")?,
                expires_at: get(row, "expires_at")?,
                ttl: to_u64(get(row, "ttl")?, "wrapped_responses.ttl")?,
                creation_path: get(row, "creation_path")?,
                wrapped_accessor: get(row, "wrapped_accessor")?,
                sealed: get(row, "sealed")?,
            })
        }

        fn token_from_row(row: &$row) -> Result<TokenRecord, StoreError> {
            let policies: String = get(row, "policies")?;
            let meta: String = get(row, "meta")?;
            let uses: Option<i64> = get(row, "uses_remaining")?;
            Ok(TokenRecord {
                hash: get(row, "hash")?,
                accessor: get(row, "accessor")?,
                tenant: tenant_id(row, "tenant_id")?,
                policies: serde_json::from_str(&policies)
                    .map_err(|_| corrupt("tokens.policies"))?,
                display_name: get(row, "display_name")?,
                created_at: get(row, "created_at")?,
                expires_at: get(row, "expires_at")?,
                period: to_u64(get(row, "period")?, "tokens.period")?,
                ttl: to_u64(get(row, "ttl")?, "tokens.ttl")?,
                max_expires_at: get(row, "max_expires_at")?,
                uses_remaining: uses
                    .map(|u| to_u64(u, "tokens.uses_remaining"))
                    .transpose()?,
                parent_accessor: get(row, "parent_accessor")?,
                meta: serde_json::from_str(&meta).map_err(|_| corrupt("tokens.meta"))?,
                renewable: get(row, "renewable")?,
                bound_cidrs: json_column(row, "bound_cidrs", "tokens.bound_cidrs")?,
                auth_mount: get::<Option<String>>(row, "auth_mount_id")?
                    .map(|text| {
                        MountId::parse(&text).ok_or_else(|| corrupt("tokens.auth_mount_id"))
                    })
                    .transpose()?,
            })
        }

        fn json_column<T: serde::de::DeserializeOwned>(
            row: &$row,
            column: &str,
            what: &str,
        ) -> Result<T, StoreError> {
            let text: String = get(row, column)?;
            serde_json::from_str(&text).map_err(|_| corrupt(what))
        }

        fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
            serde_json::to_string(value).map_err(|e| StoreError::Other(Box::new(e)))
        }

        fn role_from_row(row: &$row) -> Result<AppRoleRecord, StoreError> {
            Ok(AppRoleRecord {
                tenant: tenant_id(row, "tenant_id")?,
                mount: mount_id(row, "mount_id")?,
                name: get(row, "name")?,
                role_id: get(row, "role_id")?,
                bind_secret_id: get(row, "bind_secret_id")?,
                secret_id_num_uses: to_u64(get(row, "secret_id_num_uses")?, "secret_id_num_uses")?,
                secret_id_ttl: to_u64(get(row, "secret_id_ttl")?, "secret_id_ttl")?,
                secret_id_bound_cidrs: json_column(
                    row,
                    "secret_id_bound_cidrs",
                    "secret_id_bound_cidrs",
                )?,
                token_bound_cidrs: json_column(row, "token_bound_cidrs", "token_bound_cidrs")?,
                token_policies: json_column(row, "token_policies", "token_policies")?,
                token_ttl: to_u64(get(row, "token_ttl")?, "token_ttl")?,
                token_max_ttl: to_u64(get(row, "token_max_ttl")?, "token_max_ttl")?,
                token_explicit_max_ttl: to_u64(
                    get(row, "token_explicit_max_ttl")?,
                    "token_explicit_max_ttl",
                )?,
                token_num_uses: to_u64(get(row, "token_num_uses")?, "token_num_uses")?,
                token_no_default_policy: get(row, "token_no_default_policy")?,
                token_period: to_u64(get(row, "token_period")?, "token_period")?,
                created_at: get(row, "created_at")?,
            })
        }

        fn secret_id_from_row(row: &$row) -> Result<SecretIdRecord, StoreError> {
            let uses: Option<i64> = get(row, "uses_remaining")?;
            Ok(SecretIdRecord {
                hash: get(row, "hash")?,
                accessor: get(row, "accessor")?,
                tenant: tenant_id(row, "tenant_id")?,
                mount: mount_id(row, "mount_id")?,
                role_name: get(row, "role_name")?,
                metadata: json_column(row, "metadata", "approle_secret_ids.metadata")?,
                cidr_list: json_column(row, "cidr_list", "approle_secret_ids.cidr_list")?,
                token_bound_cidrs: json_column(
                    row,
                    "token_bound_cidrs",
                    "approle_secret_ids.token_bound_cidrs",
                )?,
                uses_remaining: uses
                    .map(|u| to_u64(u, "approle_secret_ids.uses_remaining"))
                    .transpose()?,
                num_uses: to_u64(get(row, "num_uses")?, "approle_secret_ids.num_uses")?,
                ttl: to_u64(get(row, "ttl")?, "approle_secret_ids.ttl")?,
                created_at: get(row, "created_at")?,
                expires_at: get(row, "expires_at")?,
            })
        }

        fn key_from_row(row: &$row) -> Result<KeyRecord, StoreError> {
            let mode: String = get(row, "mode")?;
            Ok(KeyRecord {
                id: key_id(row, "id")?,
                tenant: tenant_id(row, "tenant_id")?,
                mount: mount_id(row, "mount_id")?,
                name: get(row, "name")?,
                key_type: get(row, "key_type")?,
                backend: get(row, "backend")?,
                mode: KeyMode::parse(&mode).ok_or_else(|| corrupt("transit_keys.mode"))?,
                backend_reference: get(row, "backend_reference")?,
                min_available_version: to_u32(
                    get(row, "min_available_version")?,
                    "min_available_version",
                )?,
                min_decryption_version: to_u32(
                    get(row, "min_decryption_version")?,
                    "min_decryption_version",
                )?,
                min_encryption_version: to_u32(
                    get(row, "min_encryption_version")?,
                    "min_encryption_version",
                )?,
                deletion_allowed: get(row, "deletion_allowed")?,
                bound: get(row, "bound")?,
                auto_rotate_period: to_u64(get(row, "auto_rotate_period")?, "auto_rotate_period")?,
                latest_version: to_u32(get(row, "latest_version")?, "latest_version")?,
                created_at: get(row, "created_at")?,
                rotated_at: get(row, "rotated_at")?,
                options: KeyOptions {
                    derived: get(row, "derived")?,
                    convergent_encryption: get(row, "convergent_encryption")?,
                    exportable: get(row, "exportable")?,
                    allow_plaintext_backup: get(row, "allow_plaintext_backup")?,
                    imported: get(row, "imported")?,
                    imported_key_allow_rotation: get(row, "imported_key_allow_rotation")?,
                    key_size: to_u32(get(row, "key_size")?, "key_size")?,
                },
            })
        }

        fn version_from_row(row: &$row) -> Result<KeyVersionRecord, StoreError> {
            Ok(KeyVersionRecord {
                key: key_id(row, "key_id")?,
                version: to_u32(get(row, "version")?, "version")?,
                backend_reference: get(row, "backend_reference")?,
                wrapped_dek: get(row, "wrapped_dek")?,
                payload_format: u8::try_from(get::<i64>(row, "payload_format")?)
                    .map_err(|_| corrupt("payload_format"))?,
                public_key: get(row, "public_key")?,
                created_at: get(row, "created_at")?,
                counter_reserved: to_u64(get(row, "counter_reserved")?, "counter_reserved")?,
            })
        }
    };
}

pub(crate) use row_decoders;
