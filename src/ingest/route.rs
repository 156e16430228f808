//! Route normalization: turns a request URI into a short, OTRS-meaningful, bounded `route`
//! label.
//!
//! | request | route |
//! |---|---|
//! | `/otrs/index.pl?Action=AgentTicketZoom;TicketID=1` | `agent:AgentTicketZoom` |
//! | `/otrs/customer.pl?Action=CustomerTicketOverview;Subaction=MyTickets` | `customer:CustomerTicketOverview` (`…:MyTickets` with subactions on) |
//! | `POST /otrs/index.pl` (Action in the body) from a `…?Action=AgentTicketZoom` page | `agent:AgentTicketZoom` (from the Referer) |
//! | `/otrs/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST/Ticket/123` | `gi:GenericTicketConnectorREST/Ticket/:id` |
//! | `/otrs-web/js/x.js` | `static` |
//! | anything else | `other` |
//!
//! Values that are not plain identifiers become `invalid`, so hostile input cannot inject
//! arbitrary label values; the number of distinct routes is further capped per segment (see
//! [`crate::segment::Segment::admit_label_value`]).

use std::borrow::Cow;

/// Where OTRS lives in the URL space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRules {
    /// Script prefixes (`ScriptAlias`), each with leading and trailing slash.
    pub script_prefixes: Vec<String>,
    /// Static file prefixes (`Frontend::WebPath`).
    pub static_prefixes: Vec<String>,
    /// Append the `Subaction` to agent/customer/public routes.
    pub subaction: bool,
}

impl Default for RouteRules {
    fn default() -> Self {
        RouteRules {
            script_prefixes: ["/otrs/", "/znuny/", "/otobo/"].map(String::from).to_vec(),
            static_prefixes: ["/otrs-web/", "/znuny-web/", "/otobo-web/"]
                .map(String::from)
                .to_vec(),
            subaction: false,
        }
    }
}

/// Most path segments of a GenericInterface route kept in the label.
const GI_SEGMENTS: usize = 3;

fn is_ident(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether a path segment looks like an identifier value (number, UUID, hash, ticket number).
fn is_id(s: &str) -> bool {
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    if digits == s.len() {
        return true;
    }
    let hexish = s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    hexish && s.len() >= 8 && digits > 0
}

fn decode(v: &str) -> Cow<'_, str> {
    if !v.contains(['%', '+']) {
        return Cow::Borrowed(v);
    }
    form_urlencoded::parse(format!("x={v}").as_bytes())
        .next()
        .map(|(_, v)| Cow::Owned(v.into_owned()))
        .unwrap_or(Cow::Borrowed(v))
}

/// `Action` and `Subaction` of an OTRS query string (pairs separated by `;` or `&`), in one
/// pass.
fn action_params(query: &str) -> (Option<Cow<'_, str>>, Option<Cow<'_, str>>) {
    let (mut action, mut subaction) = (None, None);
    for pair in query.split([';', '&']) {
        if let Some(v) = pair.strip_prefix("Action=") {
            action.get_or_insert_with(|| decode(v));
        } else if let Some(v) = pair.strip_prefix("Subaction=") {
            subaction.get_or_insert_with(|| decode(v));
        }
    }
    (action, subaction)
}

impl RouteRules {
    /// The route label of a request.
    pub fn route(&self, method: &str, uri: &str, referer: &str) -> String {
        let mut out = String::new();
        self.route_into(method, uri, referer, &mut out);
        out
    }

    /// Writes the route label of a request into `out` (cleared first); no allocation once `out`
    /// has grown.
    pub fn route_into(&self, method: &str, uri: &str, referer: &str, out: &mut String) {
        out.clear();
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        if self
            .static_prefixes
            .iter()
            .any(|p| path.starts_with(p.as_str()))
        {
            out.push_str("static");
            return;
        }
        let Some(rest) = self
            .script_prefixes
            .iter()
            .find_map(|p| path.strip_prefix(p.as_str()))
        else {
            out.push_str("other");
            return;
        };
        let (script, path_info) = rest.split_once('/').unwrap_or((rest, ""));
        let interface = match script {
            "" | "index.pl" => "agent",
            "customer.pl" => "customer",
            "public.pl" => "public",
            "nph-genericinterface.pl" => return self.gi_route(path_info, out),
            "installer.pl" => return out.push_str("installer"),
            "rpc.pl" => return out.push_str("rpc"),
            _ => return out.push_str("other"),
        };
        let (mut action, mut subaction) = action_params(query);
        if action.as_deref().unwrap_or("").is_empty() && !matches!(method, "GET" | "HEAD") {
            // POST forms and AJAX calls carry Action in the body, which no log shows: label them
            // with the page that sent them (documented: method="POST" tells them apart).
            let ref_query = referer.split_once('?').map(|(_, q)| q).unwrap_or("");
            let ref_query = ref_query.split('#').next().unwrap_or("");
            action = action_params(ref_query).0;
            subaction = None;
        }
        let action = match action.as_deref() {
            None | Some("") => "none",
            Some(a) if is_ident(a, 64) => a,
            Some(_) => "invalid",
        };
        out.push_str(interface);
        out.push(':');
        out.push_str(action);
        match subaction.as_deref() {
            Some(s) if self.subaction && is_ident(s, 64) => {
                out.push(':');
                out.push_str(s);
            }
            Some(s) if self.subaction && !s.is_empty() => out.push_str(":invalid"),
            _ => {}
        }
    }

    fn gi_route(&self, path_info: &str, out: &mut String) {
        let mut parts = path_info.split('/').filter(|s| !s.is_empty());
        out.push_str("gi:");
        match (parts.next(), parts.next()) {
            (Some("Webservice"), Some(name)) => {
                let name = decode(name);
                out.push_str(if is_name(&name, 100) {
                    &name
                } else {
                    "invalid"
                });
            }
            (Some("WebserviceID"), Some(id))
                if id.len() <= 9 && id.bytes().all(|b| b.is_ascii_digit()) =>
            {
                out.push_str("id:");
                out.push_str(id);
            }
            _ => return out.push_str("invalid"),
        }
        for seg in parts.take(GI_SEGMENTS) {
            out.push('/');
            if is_id(seg) {
                out.push_str(":id");
            } else if is_name(seg, 64) {
                out.push_str(seg);
            } else {
                out.push_str(":x");
            }
        }
    }
}

/// `2xx`, `3xx`, … from a status code.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

/// A bounded method label: the usual methods, anything else `OTHER`.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otrs_routes() {
        let r = RouteRules::default();
        let cases = [
            ("GET", "/otrs/index.pl?Action=AgentTicketZoom;TicketID=1", "", "agent:AgentTicketZoom"),
            ("GET", "/otrs/index.pl?Action=AgentTicketZoom&TicketID=1", "", "agent:AgentTicketZoom"),
            ("GET", "/otrs/index.pl", "", "agent:none"),
            ("GET", "/otrs/", "", "agent:none"),
            ("GET", "/otrs/index.pl", "https://h/otrs/index.pl?Action=AgentTicketZoom", "agent:none"),
            ("POST", "/otrs/index.pl", "https://h/otrs/login.html", "agent:none"),
            ("POST", "/otrs/index.pl", "https://h/otrs/index.pl?Action=AgentTicketZoom;TicketID=7#x", "agent:AgentTicketZoom"),
            ("GET", "/znuny/customer.pl?Action=CustomerTicketOverview;Subaction=MyTickets", "", "customer:CustomerTicketOverview"),
            ("GET", "/otobo/public.pl?Action=PublicFAQZoom;ItemID=3", "", "public:PublicFAQZoom"),
            ("GET", "/otrs/index.pl?Action=<script>", "", "agent:invalid"),
            ("GET", "/otrs/index.pl?Action=Agent%54icketZoom", "", "agent:AgentTicketZoom"),
            ("GET", "/otrs/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST/Ticket/123", "", "gi:GenericTicketConnectorREST/Ticket/:id"),
            ("GET", "/otrs/nph-genericinterface.pl/Webservice/My%20Service/Ticket", "", "gi:invalid/Ticket"),
            ("POST", "/otrs/nph-genericinterface.pl/WebserviceID/4/TicketCreate", "", "gi:id:4/TicketCreate"),
            ("GET", "/otrs/nph-genericinterface.pl/Webservice/X/a/b/c/d/e", "", "gi:X/a/b/c"),
            ("GET", "/otrs/nph-genericinterface.pl/Webservice/X/Ticket/2021092710000011", "", "gi:X/Ticket/:id"),
            ("GET", "/otrs/nph-genericinterface.pl/Webservice/X/obj/550e8400-e29b-41d4-a716-446655440000", "", "gi:X/obj/:id"),
            ("GET", "/otrs/nph-genericinterface.pl/", "", "gi:invalid"),
            ("GET", "/otrs-web/js/Core.js?x=1", "", "static"),
            ("GET", "/otrs/installer.pl", "", "installer"),
            ("GET", "/favicon.ico", "", "other"),
            ("GET", "/otrs/../../etc/passwd", "", "other"),
        ];
        for (m, uri, referer, want) in cases {
            assert_eq!(r.route(m, uri, referer), want, "{m} {uri}");
        }
        let with_sub = RouteRules {
            subaction: true,
            ..RouteRules::default()
        };
        assert_eq!(
            with_sub.route(
                "GET",
                "/otrs/index.pl?Action=AgentTicketZoom;Subaction=ArticleUpdate",
                ""
            ),
            "agent:AgentTicketZoom:ArticleUpdate"
        );
        assert_eq!(
            with_sub.route("GET", "/otrs/index.pl?Action=A;Subaction=%3Cb%3E", ""),
            "agent:A:invalid"
        );
    }

    #[test]
    fn classes_and_methods() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(42), "other");
        assert_eq!(method_label("PROPFIND"), "OTHER");
    }
}
