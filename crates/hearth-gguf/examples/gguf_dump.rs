//! Prints a GGUF file's metadata (arrays abbreviated) and tensor index.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: gguf_dump FILE.gguf")?;
    let bytes = std::fs::read(&path)?;
    let index = match hearth_gguf::parse_index(&bytes, Some(bytes.len() as u64))? {
        hearth_gguf::Parse::Complete(i) => i,
        hearth_gguf::Parse::NeedMore { min_len } => return Err(format!("truncated: need {min_len} bytes").into()),
    };
    println!("version {} alignment {} data at {}", index.version, index.alignment, index.data_offset);
    for (k, v) in &index.metadata {
        match v {
            hearth_gguf::Value::Array(ty, items) => {
                println!("{k}: array<{ty:?}>[{}] first {:?}", items.len(), items.iter().take(4).collect::<Vec<_>>())
            }
            hearth_gguf::Value::String(s) if s.len() > 200 => println!("{k}: string({} bytes)", s.len()),
            v => println!("{k}: {v:?}"),
        }
    }
    for t in &index.tensors {
        println!("{} {:?} {} @{} ({} bytes)", t.name, t.dims, t.ty, t.offset, t.n_bytes);
    }
    Ok(())
}
