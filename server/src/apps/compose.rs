// PLACEHOLDER until the compose parser lands (being written by a helper).
use app::api::AppSpec;
pub struct ComposeApp {
    pub service: String,
    pub spec: AppSpec,
    pub depends_on: Vec<String>,
}
#[derive(Debug, Clone, PartialEq)]
pub struct ComposeError {
    pub problems: Vec<(String, String)>,
}
impl std::fmt::Display for ComposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.problems)
    }
}
pub fn parse(_stack: &str, _yaml: &str) -> Result<Vec<ComposeApp>, ComposeError> {
    Err(ComposeError { problems: vec![] })
}
