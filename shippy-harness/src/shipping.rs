//! Shipping as tests drive it: the original shippy's sample consignment, and
//! a [`Cluster`]'s consignment calls (create, list, page, cancel) and the
//! fleet's room as vessel-service reports it.

use std::{collections::BTreeMap, time::Duration};

use shippy_proto::{
    consignment::v1::{
        CancelRequest, Consignment, Container, GetRequest,
        shipping_service_client::ShippingServiceClient,
    },
    vessel::v1::{ListRequest, Vessel, vessel_service_client::VesselServiceClient},
};
use tonic::{Request, Status, transport::Channel};

use shippy_testkit::wait_until_equal;

use crate::{Cluster, bearer};

/// `(used containers, used kg)` by vessel id.
pub type Used = BTreeMap<String, (i32, i32)>;

/// The original shippy's sample consignment: 3 containers, 55 000 kg.
pub fn sample() -> Consignment {
    let container = |customer: &str, city: &str| Container {
        customer_id: customer.into(),
        origin: format!("{city}, United Kingdom"),
        user_id: "user001".into(),
        ..Default::default()
    };
    Consignment {
        description: "This is a test consignment".into(),
        weight: 55_000,
        containers: vec![
            container("cust001", "Manchester"),
            container("cust002", "Derby"),
            container("cust005", "Sheffield"),
        ],
        vessel_id: "vessel001".into(),
        ..Default::default()
    }
}

/// `tonnes` in one container.
pub fn one_container_of(tonnes: i32) -> Consignment {
    Consignment {
        description: format!("{tonnes} t of gravel"),
        weight: tonnes * 1_000,
        containers: vec![Container {
            customer_id: "cust001".into(),
            origin: "Derby".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The sample consignment's room, on the vessel it goes to.
pub fn one_sample_on(vessel: &str) -> Used {
    [(vessel.to_owned(), (3, 55_000))].into()
}

/// Sends `request` to the consignment-service at `shipping`; answers the
/// consignment placed.
pub async fn create_at(
    shipping: Channel,
    request: Request<Consignment>,
) -> Result<Consignment, Status> {
    let response = ShippingServiceClient::new(shipping)
        .create_consignment(request)
        .await?;
    Ok(response
        .into_inner()
        .consignment
        .expect("the consignment placed"))
}

/// `token`'s owner's request for `page_size` consignments after
/// `page_token` (the first page after `""`).
pub fn page_request(token: &str, page_size: u32, page_token: &str) -> Request<GetRequest> {
    bearer(
        GetRequest {
            page_size,
            page_token: page_token.into(),
        },
        token,
    )
}

/// Every page `token`'s owner lists at the consignment-service at
/// `shipping`, `page_size` at a time, first to last.
pub async fn pages_at(shipping: Channel, token: &str, page_size: u32) -> Vec<Vec<Consignment>> {
    let mut client = ShippingServiceClient::new(shipping);
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .get_consignments(page_request(token, page_size, &page_token))
            .await
            .expect("a page a default client can read")
            .into_inner();
        pages.push(page.consignments);
        if page.next_page_token.is_empty() {
            return pages;
        }
        page_token = page.next_page_token;
    }
}

impl Cluster {
    /// `consignment` created as `token`'s owner: the consignment placed.
    pub async fn create(
        &self,
        token: &str,
        consignment: Consignment,
    ) -> Result<Consignment, Status> {
        create_at(self.shipping.clone(), bearer(consignment, token)).await
    }

    /// The first 100 consignments `token`'s owner sees, newest first.
    pub async fn list(&self, token: &str) -> Vec<Consignment> {
        self.shipping()
            .get_consignments(page_request(token, 100, ""))
            .await
            .expect("listed")
            .into_inner()
            .consignments
    }

    /// Every page `token`'s owner lists, `page_size` at a time.
    pub async fn pages(&self, token: &str, page_size: u32) -> Vec<Vec<Consignment>> {
        pages_at(self.shipping.clone(), token, page_size).await
    }

    /// Cancels consignment `id` as `token`'s owner: the consignment cancelled.
    pub async fn cancel(&self, token: &str, id: &str) -> Result<Consignment, Status> {
        let response = self
            .shipping()
            .cancel_consignment(bearer(CancelRequest { id: id.into() }, token))
            .await?;
        Ok(response
            .into_inner()
            .consignment
            .expect("the consignment cancelled"))
    }

    /// The fleet as `ListVessels` shows it, by id.
    pub async fn fleet(&self, token: &str) -> BTreeMap<String, Vessel> {
        VesselServiceClient::new(self.vessels.clone())
            .list_vessels(bearer(ListRequest::default(), token))
            .await
            .expect("the fleet listed")
            .into_inner()
            .vessels
            .into_iter()
            .map(|vessel| (vessel.id.clone(), vessel))
            .collect()
    }

    /// The room used on every vessel with anything used.
    pub async fn used(&self, token: &str) -> Used {
        self.fleet(token)
            .await
            .into_iter()
            .filter(|(_, vessel)| vessel.used_capacity > 0 || vessel.used_weight > 0)
            .map(|(id, vessel)| (id, (vessel.used_capacity, vessel.used_weight)))
            .collect()
    }

    /// Waits until [`Cluster::used`] shows `wanted`, up to `limit`.
    pub async fn wait_for_used(&self, token: &str, wanted: &Used, limit: Duration) {
        wait_until_equal("the room used", wanted, limit, async || {
            self.used(token).await
        })
        .await;
    }
}
