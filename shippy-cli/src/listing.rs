//! Listing a collection a service answers a page at a time: every page of
//! it ([`all_pages`]), and the column widths of the table it is shown in
//! ([`column_width`]).

/// Every item of a paged listing, in the service's order: asks for the
/// first page (an empty page token), then for the page after each until
/// the service answers an empty next-page token. `page(token)` answers one
/// page's items and its next-page token.
pub async fn all_pages<T, E>(
    mut page: impl AsyncFnMut(String) -> Result<(Vec<T>, String), E>,
) -> Result<Vec<T>, E> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let (items, next_page_token) = page(page_token).await?;
        all.extend(items);
        if next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = next_page_token;
    }
}

/// How wide a text column must be to hold its `title` and every one of
/// `values`, in characters (what `{:width$}` pads by).
pub fn column_width<'a>(title: &str, values: impl IntoIterator<Item = &'a str>) -> usize {
    values
        .into_iter()
        .map(|value| value.chars().count())
        .max()
        .unwrap_or(0)
        .max(title.chars().count())
}

#[cfg(test)]
mod tests {
    use std::{
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use super::*;

    /// The answer of a future that never waits (these pages are at hand).
    fn at_once<F: Future>(future: F) -> F::Output {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("the future waited"),
        }
    }

    #[test]
    fn all_pages_follows_the_tokens_to_the_end() {
        let mut asked = Vec::new();
        let all = at_once(all_pages(async |token: String| {
            asked.push(token.clone());
            Ok::<_, ()>(match token.as_str() {
                "" => (vec![1, 2], "b".to_owned()),
                "b" => (vec![3], "c".to_owned()),
                _ => (vec![4], String::new()),
            })
        }))
        .unwrap();
        assert_eq!(all, [1, 2, 3, 4]);
        assert_eq!(asked, ["", "b", "c"]);
    }

    #[test]
    fn all_pages_stops_at_the_first_failure() {
        let mut calls = 0;
        let failed = at_once(all_pages(async |_token: String| {
            calls += 1;
            Err::<(Vec<u8>, String), _>("refused")
        }));
        assert_eq!(failed, Err("refused"));
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_column_fits_its_title_and_widest_value_in_characters() {
        assert_eq!(column_width("ID", []), 2);
        assert_eq!(column_width("ID", ["abc", "a"]), 3);
        assert_eq!(column_width("NAME", ["Zoë", "Ann"]), 4);
        assert_eq!(column_width("N", ["Zoë"]), 3);
    }
}
