//! Conversations in IndexedDB: database `hearth-chats` ([`APP`]; the widget's are in
//! [`WIDGET`], so that a widget opened on Hearth's own origin never shows or forgets the
//! app's), store `conversations`, keyed by `id`. Separate from the worker's model database
//! so neither migration can break the other.

use indexed_db_futures::database::Database;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::TransactionMode;

use super::state::Conversation;

pub const APP: &str = "hearth-chats";
pub const WIDGET: &str = "hearth-widget-chats";
const STORE: &str = "conversations";

async fn open(db: &str) -> Result<Database, String> {
    Database::open(db)
        .with_version(1u8)
        .with_on_upgrade_needed(|event, db| {
            if event.old_version() < 1.0 {
                db.create_object_store(STORE).with_key_path("id".into()).build()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("could not open the conversation store: {e}"))
}

pub async fn load_all(db: &str) -> Result<Vec<Conversation>, String> {
    let db = open(db).await?;
    let tx = db.transaction(STORE).build().map_err(|e| e.to_string())?;
    let store = tx.object_store(STORE).map_err(|e| e.to_string())?;
    let records =
        store.get_all::<Conversation>().serde().map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
    // A record that no longer deserialises is skipped rather than losing all the others.
    Ok(records.filter_map(Result::ok).collect())
}

pub async fn save(db: &str, conv: Conversation) -> Result<(), String> {
    let db = open(db).await?;
    let tx = db.transaction(STORE).with_mode(TransactionMode::Readwrite).build().map_err(|e| e.to_string())?;
    let store = tx.object_store(STORE).map_err(|e| e.to_string())?;
    store.put(conv).serde().map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}

pub async fn delete(db: &str, id: String) -> Result<(), String> {
    let db = open(db).await?;
    let tx = db.transaction(STORE).with_mode(TransactionMode::Readwrite).build().map_err(|e| e.to_string())?;
    let store = tx.object_store(STORE).map_err(|e| e.to_string())?;
    store.delete(id).await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}
