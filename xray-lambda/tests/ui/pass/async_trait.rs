use xray_lambda::capture;

#[async_trait::async_trait]
trait Store {
    async fn get(&self, key: &str) -> Result<Option<String>, std::io::Error>;
    async fn put(&mut self, key: String, value: String);
}

struct Memory(Vec<(String, String)>);

#[async_trait::async_trait]
impl Store for Memory {
    #[capture]
    async fn get(&self, key: &str) -> Result<Option<String>, std::io::Error> {
        Ok(self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    #[capture(name = "Memory.put", annotate(key))]
    async fn put(&mut self, key: String, value: String) {
        self.0.push((key, value));
    }
}

fn main() {
    let mut m = Memory(Vec::new());
    let _ = m.put("k".into(), "v".into());
    let _ = m.get("k");
}
