//! A small hand-written path router, one table per API family.
//!
//! Patterns are `/`-separated literal segments and `:name` parameters (`/bot/flows/:flow_id`).
//! A family builds its table once at start-up and maps a match to its own handler value (an
//! enum, usually), so dispatch stays a plain `match` with no boxing. A path that matches a
//! pattern under another method gives [`Match::MethodNotAllowed`] with the `Allow` list, so 404
//! and 405 come out right for every family without extra code.

use hyper::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    Lit(&'static str),
    Param(&'static str),
}

#[derive(Debug)]
struct Route<H> {
    method: Method,
    segs: Vec<Seg>,
    handler: H,
}

#[derive(Debug)]
pub struct Router<H> {
    routes: Vec<Route<H>>,
}

/// Path parameters of a match, percent-decoded, in pattern order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Match<'r, H> {
    Found(&'r H, Params),
    NotFound,
    MethodNotAllowed(Vec<Method>),
}

impl<H> Default for Router<H> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<H> Router<H> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route. `pattern` must start with `/`; a bad pattern is a programming error.
    pub fn route(mut self, method: Method, pattern: &'static str, handler: H) -> Self {
        assert!(
            pattern.starts_with('/'),
            "route pattern must start with '/': {pattern}"
        );
        let segs = split(pattern)
            .map(|s| match s.strip_prefix(':') {
                Some(name) => Seg::Param(name),
                None => Seg::Lit(s),
            })
            .collect();
        self.routes.push(Route {
            method,
            segs,
            handler,
        });
        self
    }

    /// Matches `path` (already stripped of the family prefix and of the query string).
    /// `HEAD` falls back to `GET` routes.
    pub fn lookup(&self, method: &Method, path: &str) -> Match<'_, H> {
        let parts: Vec<&str> = split(path).collect();
        let mut allowed: Vec<Method> = Vec::new();
        for route in &self.routes {
            let Some(params) = match_segs(&route.segs, &parts) else {
                continue;
            };
            if route.method == *method || (*method == Method::HEAD && route.method == Method::GET) {
                return Match::Found(&route.handler, params);
            }
            if !allowed.contains(&route.method) {
                allowed.push(route.method.clone());
            }
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed(allowed)
        }
    }
}

/// Splits on `/`, ignoring one trailing slash and empty leading segment (`/a/b/` = `/a/b`).
fn split(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    trimmed.split('/').filter({
        let empty = trimmed.is_empty();
        move |_| !empty
    })
}

fn match_segs(segs: &[Seg], parts: &[&str]) -> Option<Params> {
    if segs.len() != parts.len() {
        return None;
    }
    let mut params = Params::default();
    for (seg, part) in segs.iter().zip(parts) {
        match seg {
            Seg::Lit(lit) => {
                if lit != part {
                    return None;
                }
            }
            Seg::Param(name) => {
                if part.is_empty() {
                    return None;
                }
                params.0.push((name, percent_decode(part)?));
            }
        }
    }
    Some(params)
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8 or an escape is malformed (the
/// route then does not match, which gives a 404 rather than a garbled id).
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Value of `name` in a query string (`a=1&b=2`), percent-decoded, `+` as space.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(&v.replace('+', " ")).unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum H {
        Bot,
        BotPut,
        Flows,
        Flow,
    }

    fn router() -> Router<H> {
        Router::new()
            .route(Method::GET, "/bot", H::Bot)
            .route(Method::PUT, "/bot", H::BotPut)
            .route(Method::GET, "/bot/flows", H::Flows)
            .route(Method::GET, "/bot/flows/:flow_id", H::Flow)
    }

    #[test]
    fn literal_and_param_routes() {
        let r = router();
        assert_eq!(
            r.lookup(&Method::GET, "/bot"),
            Match::Found(&H::Bot, Params::default())
        );
        assert_eq!(
            r.lookup(&Method::PUT, "/bot/"),
            Match::Found(&H::BotPut, Params::default())
        );
        match r.lookup(&Method::GET, "/bot/flows/a%20b") {
            Match::Found(h, p) => {
                assert_eq!(*h, H::Flow);
                assert_eq!(p.get("flow_id"), Some("a b"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.lookup(&Method::HEAD, "/bot/flows"),
            Match::Found(&H::Flows, Params::default())
        );
    }

    #[test]
    fn not_found_and_method_not_allowed() {
        let r = router();
        assert_eq!(r.lookup(&Method::GET, "/nope"), Match::NotFound);
        assert_eq!(r.lookup(&Method::GET, "/bot/flows/x/y"), Match::NotFound);
        assert_eq!(r.lookup(&Method::GET, "/"), Match::NotFound);
        assert_eq!(
            r.lookup(&Method::DELETE, "/bot"),
            Match::MethodNotAllowed(vec![Method::GET, Method::PUT])
        );
        // A malformed escape never matches a parameter.
        assert_eq!(r.lookup(&Method::GET, "/bot/flows/%zz"), Match::NotFound);
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param(Some("a=1&version_id=x%2Fy"), "version_id").as_deref(),
            Some("x/y")
        );
        assert_eq!(query_param(Some("a=1"), "b"), None);
        assert_eq!(query_param(None, "b"), None);
        assert_eq!(query_param(Some("q=a+b"), "q").as_deref(), Some("a b"));
    }
}
