//! URLs as we may print them: without the `user:password@` part.
//!
//! An operator can write credentials into `auth_url`, and GitLab puts the job token into the
//! repository URL it sends (`https://gitlab-ci-token:TOKEN@host/...`). Any URL that reaches an
//! error message, a log line or a template goes through here first.

use std::borrow::Cow;

/// `url` with the userinfo of its authority removed; text that is not a URL comes back as is.
pub fn without_userinfo(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // The last `@` ends the userinfo: a password may itself hold an unescaped `@`.
    match rest[..authority_len].rfind('@') {
        Some(at) => Cow::Owned(format!("{}{}", &url[..authority_start], &rest[at + 1..])),
        None => Cow::Borrowed(url),
    }
}

/// Every URL inside `text` (a message, a JSON string) without its userinfo.
pub fn scrub_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        // The scheme is the run of scheme characters right before `://`.
        let scheme_start = rest[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        out.push_str(&rest[..scheme_start]);
        let url_len = rest[scheme_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
            .unwrap_or(rest.len() - scheme_start);
        let url = &rest[scheme_start..scheme_start + url_len];
        out.push_str(&without_userinfo(url));
        rest = &rest[scheme_start + url_len..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_removed_and_the_rest_kept() {
        assert_eq!(
            without_userinfo("http://user:pa@ss@keystone:5000/v3?x=a@b#f"),
            "http://keystone:5000/v3?x=a@b#f"
        );
        assert_eq!(
            without_userinfo("https://gitlab-ci-token:glcbt-xyz@gitlab.example/g/p.git"),
            "https://gitlab.example/g/p.git"
        );
        assert_eq!(without_userinfo("https://host/a@b"), "https://host/a@b");
        assert_eq!(without_userinfo("no url here"), "no url here");
    }

    #[test]
    fn every_url_in_a_text_is_scrubbed() {
        assert_eq!(
            scrub_urls("cannot reach http://u:p@a/v3 or 'https://t:k@b' now"),
            "cannot reach http://a/v3 or 'https://b' now"
        );
    }
}
