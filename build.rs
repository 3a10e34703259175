//! `sqlx::migrate!` embeds `migrations/` at compile time but notices only
//! edits to files it already embedded; this makes a new migration rebuild too.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
