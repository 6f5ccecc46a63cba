//! Read-only diagnostic tools (being written).
pub struct ToolInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub params_schema: &'static str,
}
pub fn catalog() -> &'static [ToolInfo] {
    &[]
}
pub fn call(name: &str, _args_json: &str) -> Result<String, String> {
    Err(format!("unknown tool {name}"))
}
pub fn mask_secrets(text: &str) -> String {
    text.to_string()
}
