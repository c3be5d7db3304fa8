//! The bakery's domain: an order, its basket, its price, and the bounds every field must keep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// The longest order id, customer id or SKU accepted, in characters.
pub(crate) const MAX_ID_CHARS: usize = 64;
/// The longest location name accepted, in characters.
pub(crate) const MAX_LOCATION_CHARS: usize = 64;
/// The most lines a basket may have.
pub(crate) const MAX_ITEMS: usize = 50;
/// The largest quantity on one line.
pub(crate) const MAX_QUANTITY: u32 = 1_000;
/// The largest total charged, in cents (1,000,000.00, the payment example's bound): every JSON
/// reader holds it exactly (JavaScript's numbers stop at 2^53).
pub(crate) const MAX_TOTAL_CENTS: u64 = 100_000_000;

/// What the bakery sells, and the price of one, in cents. An order is always charged these
/// prices, never a price from the request: a client that named its own could buy a wedding cake
/// for a cent (deployed, this is a table or a price service).
const CATALOGUE: &[(&str, u64)] = &[
    ("baguette", 180),
    ("bun", 100),
    ("cinnamon-bun", 275),
    ("croissant", 220),
    ("loaf", 450),
    ("rye", 300),
    ("rye-loaf", 2550),
    ("sourdough-loaf", 450),
];

/// The prices an order is charged (deployed: a table or a price service, whose prices change
/// while idempotency keys are live; here the bakery's list, which tests change). Shared by the
/// clones of the app.
#[derive(Debug, Clone)]
pub(crate) struct Catalogue(Arc<Mutex<HashMap<String, u64>>>);

impl Catalogue {
    /// The bakery's list.
    pub(crate) fn bakery() -> Self {
        Catalogue(Arc::new(Mutex::new(
            CATALOGUE
                .iter()
                .map(|&(sku, price)| (sku.to_owned(), price))
                .collect(),
        )))
    }

    /// The price of one `sku`, in cents, or `None` for one the bakery does not sell.
    pub(crate) fn price_cents(&self, sku: &str) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sku)
            .copied()
    }

    /// Sets the price of `sku` (a price change, in tests).
    #[cfg(test)]
    pub(crate) fn set_price(&self, sku: &str, price_cents: u64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sku.to_owned(), price_cents);
    }
}

/// An order placed by a customer at one of the bakery's locations.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub(crate) struct Order {
    pub(crate) order_id: String,
    pub(crate) customer_id: String,
    pub(crate) location: String,
    pub(crate) items: Vec<LineItem>,
}

/// One line of the basket. A field a line does not have is refused, unlike the order's: a price
/// sent under another name (`unitPriceCents`) would go unchecked, and the customer charged a
/// price other than the one shown (found by an attack from the docs).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineItem {
    pub(crate) sku: String,
    pub(crate) quantity: u32,
    /// The price of one, in cents: the catalogue's once the order is priced
    /// ([`Order::price`]), and so in every saved order. A request may leave it out, or send
    /// the price it showed the customer: one that is not the catalogue's is refused
    /// (`PriceChanged`), never charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) unit_price_cents: Option<u64>,
}

/// Why an order cannot be accepted; the API answers 400 with the message. Messages quote only
/// values that passed their bounds, so an answer never grows with the request.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum OrderError {
    #[error("{field} must be 1 to {MAX_ID_CHARS} characters from A-Z, a-z, 0-9, '-' and '_'")]
    InvalidId { field: &'static str },
    #[error(
        "location must be 1 to {MAX_LOCATION_CHARS} characters, not all of them spaces or \
         invisible, none of them a control, line break or bidirectional formatting character"
    )]
    InvalidLocation,
    #[error("order {0} has an empty basket")]
    EmptyBasket(String),
    #[error("order {0} has more than {MAX_ITEMS} lines")]
    TooManyItems(String),
    #[error("order {order_id}: {sku} has quantity 0")]
    ZeroQuantity { order_id: String, sku: String },
    #[error("order {order_id}: {sku} has a quantity over {MAX_QUANTITY}")]
    QuantityTooLarge { order_id: String, sku: String },
    #[error("order {order_id}: the bakery does not sell {sku}")]
    UnknownSku { order_id: String, sku: String },
    #[error(
        "order {order_id}: {sku} costs {price_cents} cents, not the price sent; show the \
         customer the new price and send the order again"
    )]
    PriceChanged {
        order_id: String,
        sku: String,
        price_cents: u64,
    },
    #[error("order {0}: the total is over {MAX_TOTAL_CENTS} cents")]
    TotalTooLarge(String),
}

impl OrderError {
    /// A stable code for API clients.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            OrderError::InvalidId { .. } => "InvalidId",
            OrderError::InvalidLocation => "InvalidLocation",
            OrderError::EmptyBasket(_) => "EmptyBasket",
            OrderError::TooManyItems(_) => "TooManyItems",
            OrderError::ZeroQuantity { .. } => "ZeroQuantity",
            OrderError::QuantityTooLarge { .. } => "QuantityTooLarge",
            OrderError::UnknownSku { .. } => "UnknownSku",
            OrderError::PriceChanged { .. } => "PriceChanged",
            OrderError::TotalTooLarge(_) => "TotalTooLarge",
        }
    }
}

/// Whether `id` is 1 to [`MAX_ID_CHARS`] characters of `A-Z a-z 0-9 - _`.
pub(crate) fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

impl Order {
    /// Checks every field against its bounds, before the idempotency claim (these rules do not
    /// change, so a retry refused by one was refused the first time too): why the order cannot
    /// be accepted, if it cannot.
    pub(crate) fn check(&self) -> Result<(), OrderError> {
        for (field, id) in [
            ("order_id", &self.order_id),
            ("customer_id", &self.customer_id),
        ] {
            if !is_valid_id(id) {
                return Err(OrderError::InvalidId { field });
            }
        }
        let location_chars = self.location.chars().count();
        if !(1..=MAX_LOCATION_CHARS).contains(&location_chars)
            || powertools::core::text::displays_as_empty(&self.location)
            || self.location.chars().any(|c| {
                // U+2028 and U+2029 break lines as `\n` does, though they are not controls.
                c.is_control()
                    || powertools::core::text::is_bidi_control(c)
                    || matches!(c, '\u{2028}' | '\u{2029}')
            })
        {
            return Err(OrderError::InvalidLocation);
        }
        if self.items.len() > MAX_ITEMS {
            return Err(OrderError::TooManyItems(self.order_id.clone()));
        }
        if self.items.iter().any(|item| !is_valid_id(&item.sku)) {
            return Err(OrderError::InvalidId { field: "sku" });
        }
        if self.items.is_empty() {
            return Err(OrderError::EmptyBasket(self.order_id.clone()));
        }
        for item in &self.items {
            if item.quantity == 0 {
                return Err(OrderError::ZeroQuantity {
                    order_id: self.order_id.clone(),
                    sku: item.sku.clone(),
                });
            }
            if item.quantity > MAX_QUANTITY {
                return Err(OrderError::QuantityTooLarge {
                    order_id: self.order_id.clone(),
                    sku: item.sku.clone(),
                });
            }
        }
        Ok(())
    }

    /// What the customer asked for, without the prices the client showed: the idempotency
    /// claim's validation data, so that a retry is the same request with or without them and
    /// after a price change (priced, a retry after one was refused as the key reused; found by
    /// an attack from the docs).
    pub(crate) fn basket(&self) -> Order {
        Order {
            items: self
                .items
                .iter()
                .map(|item| LineItem {
                    unit_price_cents: None,
                    ..item.clone()
                })
                .collect(),
            ..self.clone()
        }
    }

    /// Prices a checked basket from the catalogue as it is now, inside the claim (each line's
    /// `unit_price_cents` is the catalogue's after it): the total in cents, or why the basket
    /// cannot be priced.
    pub(crate) fn price(&mut self, catalogue: &Catalogue) -> Result<u64, OrderError> {
        let order_id = &self.order_id;
        let mut total = 0u64;
        for item in &mut self.items {
            let Some(price_cents) = catalogue.price_cents(&item.sku) else {
                return Err(OrderError::UnknownSku {
                    order_id: order_id.clone(),
                    sku: item.sku.clone(),
                });
            };
            if item
                .unit_price_cents
                .is_some_and(|sent| sent != price_cents)
            {
                return Err(OrderError::PriceChanged {
                    order_id: order_id.clone(),
                    sku: item.sku.clone(),
                    price_cents,
                });
            }
            item.unit_price_cents = Some(price_cents);
            total = price_cents
                .checked_mul(u64::from(item.quantity))
                .and_then(|line| total.checked_add(line))
                .filter(|total| *total <= MAX_TOTAL_CENTS)
                .ok_or_else(|| OrderError::TotalTooLarge(order_id.clone()))?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Order {
        /// Checked and priced from the bakery's list, as a request is (before the claim, then
        /// in it).
        fn validate(&mut self) -> Result<u64, OrderError> {
            self.check()?;
            self.price(&Catalogue::bakery())
        }
    }

    fn order(items: Vec<LineItem>) -> Order {
        Order {
            order_id: "ord-1".into(),
            customer_id: "cust-1".into(),
            location: "camden".into(),
            items,
        }
    }

    /// A line without a price, as a client may send it.
    fn item(sku: &str, quantity: u32) -> LineItem {
        LineItem {
            sku: sku.into(),
            quantity,
            unit_price_cents: None,
        }
    }

    /// A line with the price the client showed.
    fn priced(sku: &str, quantity: u32, unit_price_cents: u64) -> LineItem {
        LineItem {
            unit_price_cents: Some(unit_price_cents),
            ..item(sku, quantity)
        }
    }

    #[test]
    fn the_total_is_the_sum_of_the_lines_at_the_catalogue_s_prices() {
        let mut basket = order(vec![item("loaf", 2), priced("cinnamon-bun", 6, 275)]);
        assert_eq!(basket.validate(), Ok(2 * 450 + 6 * 275));
        // Every line carries the price charged, as the order is saved.
        assert_eq!(basket.items[0].unit_price_cents, Some(450));
        assert_eq!(basket.items[1].unit_price_cents, Some(275));
    }

    /// The price charged is the catalogue's, never the request's (the example took each line's
    /// price from the body: a 0-cent wedding cake beside a 1-cent bun was a 1-cent charge).
    #[test]
    fn a_price_that_is_not_the_catalogue_s_or_a_sku_it_lacks_is_refused() {
        let refused = |items| order(items).validate().unwrap_err();
        for sent in [0, 1, 449, 451, u64::MAX] {
            let error = refused(vec![item("bun", 1), priced("loaf", 2, sent)]);
            assert_eq!(error.code(), "PriceChanged", "{sent}");
            assert_eq!(
                error.to_string(),
                "order ord-1: loaf costs 450 cents, not the price sent; show the customer the \
                 new price and send the order again"
            );
        }
        let error = refused(vec![item("loaf", 1), item("wedding-cake", 1)]);
        assert_eq!(error.code(), "UnknownSku");
        assert_eq!(
            error.to_string(),
            "order ord-1: the bakery does not sell wedding-cake"
        );
        // A catalogue price is never free, and never over the most one order is charged: a
        // valid basket always has something to charge.
        for (sku, price) in CATALOGUE {
            assert!((1..=MAX_TOTAL_CENTS).contains(price), "{sku}");
            assert_eq!(Catalogue::bakery().price_cents(sku), Some(*price));
        }
    }

    #[test]
    fn an_empty_basket_a_zero_quantity_and_an_overflow_are_refused() {
        assert_eq!(order(vec![]).validate().unwrap_err().code(), "EmptyBasket");
        assert_eq!(
            order(vec![item("loaf", 0)]).validate().unwrap_err().code(),
            "ZeroQuantity"
        );
        // A total every JSON reader holds exactly (JavaScript's numbers stop at 2^53), and no
        // more than the payment example charges (found by an attack: 10^18 cents were placed).
        let most = vec![item("rye-loaf", MAX_QUANTITY); 39];
        assert_eq!(order(most.clone()).validate(), Ok(39 * 1_000 * 2_550));
        let over = [most, vec![item("rye-loaf", 1_000)]].concat();
        const { assert!(40 * 1_000 * 2_550 > MAX_TOTAL_CENTS) };
        assert_eq!(order(over).validate().unwrap_err().code(), "TotalTooLarge");
    }

    #[test]
    fn ids_locations_and_baskets_are_bounded() {
        let valid = order(vec![item("loaf", 1)]);
        assert_eq!(valid.clone().validate(), Ok(450));
        let code = |mut order: Order| order.validate().unwrap_err().code();
        for id in ["", "ord 1", "ord/1", "órd-1", &"o".repeat(MAX_ID_CHARS + 1)] {
            let mut bad = valid.clone();
            bad.order_id = id.to_owned();
            assert_eq!(code(bad), "InvalidId", "{id:?}");
        }
        let mut longest = valid.clone();
        longest.customer_id = "c".repeat(MAX_ID_CHARS);
        assert!(longest.validate().is_ok());
        // Blank, or with bidirectional controls that make a name read as another in logs and
        // receipts (found by an attack).
        for location in [
            "",
            "camden\n",
            &"é".repeat(MAX_LOCATION_CHARS + 1),
            "   ",
            "\u{a0}",
            "camden\u{202e}nedmac",
            "\u{2066}camden",
            // Found by an attack: Arabic letter mark (a bidirectional control), names that
            // display as nothing, and a line break.
            "camden\u{61c}",
            "\u{200b}",
            "\u{feff}",
            " \u{200d}\u{2060} ",
            "camden\u{2028}x",
            "camden\u{2029}",
            // Found by a review: fillers, blanks, selectors and tags that draw nothing.
            "\u{3164}",
            "\u{2800}",
            "\u{115f}\u{1160}",
            "\u{ffa0}",
            "\u{34f}",
            "\u{fe0f}",
            "\u{e0020}\u{e0041}",
            "\u{206a}",
            "\u{180b}",
            "\u{fff9}",
        ] {
            let mut bad = valid.clone();
            bad.location = location.to_owned();
            assert_eq!(code(bad), "InvalidLocation", "{location:?}");
        }
        let mut cafe = valid.clone();
        cafe.location = "Café Zürich".to_owned();
        assert!(cafe.validate().is_ok(), "any printable name");
        let mut joined = valid.clone();
        joined.location = "\u{1f469}\u{200d}\u{1f373} bakery".to_owned();
        assert!(
            joined.validate().is_ok(),
            "a joiner between visible characters"
        );
        assert_eq!(
            code(order(vec![item("loaf", 1); MAX_ITEMS + 1])),
            "TooManyItems"
        );
        assert_eq!(
            code(order(vec![item("loaf", MAX_QUANTITY + 1)])),
            "QuantityTooLarge"
        );
        assert_eq!(code(order(vec![item("", 1)])), "InvalidId");
        // A refusal quotes no unbounded value.
        let mut huge = valid;
        huge.order_id = "o".repeat(100_000);
        assert!(huge.validate().unwrap_err().to_string().len() < 200);
    }
}
