//! Which nodes a config runs and where each one listens.
//!
//! Addresses are derived, not configured, so that every process of a deployment (and every
//! tool pointed at it) computes the same plan from the same config.

use crate::load::Config;
use crate::node::{NodeSpec, Role};
use std::net::SocketAddr;

impl Config {
    /// Every node this config runs, service instances before the load balancers in front of them.
    pub fn nodes(&self) -> Vec<NodeSpec> {
        let net = &self.network;
        let mut services = Vec::new();
        let mut lbs = Vec::new();
        for (ri, region) in self.regions.iter().enumerate() {
            let third = (ri + 1) as u8;
            let per_az = self.instances_per_az(region);
            let mut slot = 0u8;
            for az in &region.azs {
                for n in 1..=per_az {
                    let ip = net.addr(third, 11 + slot);
                    slot += 1;
                    let address = SocketAddr::new(ip.into(), net.service_port);
                    services.push(NodeSpec {
                        name: format!("svc-{az}-{n}"),
                        role: Role::Service,
                        region: Some(region.name.clone()),
                        az: Some(az.clone()),
                        address,
                        admin: address,
                    });
                }
            }
            let ip = net.addr(third, 1);
            lbs.push(NodeSpec {
                name: format!("lb-{}", region.name),
                role: Role::Lb,
                region: Some(region.name.clone()),
                az: None,
                address: SocketAddr::new(ip.into(), net.lb_port),
                admin: SocketAddr::new(ip.into(), net.admin_port),
            });
        }
        services.extend(lbs);
        // The primary first: its standbys copy it when they start.
        services.extend(
            self.database
                .iter()
                .flat_map(|db| db.instances())
                .filter_map(|(region, az, _)| self.db_node(&region, &az)),
        );
        // Each cluster's primary first: its replica follows it when it starts.
        services.extend(
            self.cache
                .iter()
                .flat_map(|c| c.nodes())
                .filter_map(|(region, az, _)| self.cache_node(&region, &az)),
        );
        for pop in &self.edges {
            if let Some((address, admin)) = self.loopback_pop_addresses(&pop.name) {
                services.push(NodeSpec {
                    name: format!("edge-{}", pop.name),
                    role: Role::Edge,
                    region: None,
                    az: None,
                    address,
                    admin,
                });
            }
        }
        // Regional edge caches start with the PoPs (the same role), after the balancers.
        services.extend(self.regional_cache_nodes());
        if self.simulation.wan {
            let ip = net.addr(0, 2);
            services.push(NodeSpec {
                name: "wan".to_owned(),
                role: Role::Wan,
                region: None,
                az: None,
                address: SocketAddr::new(ip.into(), net.admin_port),
                admin: SocketAddr::new(ip.into(), net.admin_port),
            });
        }
        for k in 0..self.dns.servers {
            let ip = net.addr(0, 10 + k as u8);
            services.push(NodeSpec {
                name: format!("dns-{}", k + 1),
                role: Role::Dns,
                region: None,
                az: None,
                address: SocketAddr::new(ip.into(), self.dns.port),
                admin: SocketAddr::new(ip.into(), net.admin_port),
            });
        }
        if self.console.enabled {
            let address = self.loopback_console_address();
            services.push(NodeSpec {
                name: "console".to_owned(),
                role: Role::Console,
                region: None,
                az: None,
                address,
                admin: address,
            });
        }
        if !self.hosts.is_empty() {
            self.place_on_hosts(&mut services);
        }
        services
    }

    /// Node `name` as placed on its host, when the config has hosts: the addresses below
    /// are the one-machine layout's otherwise.
    fn on_host(&self, name: &str) -> Option<Option<NodeSpec>> {
        (!self.hosts.is_empty()).then(|| self.node(name))
    }

    /// The database node of `az` in `region`: `127.x.<region>.60+<AZ index>`, PostgreSQL on
    /// the configured port, its keeper's admin on the admin port.
    pub fn db_node(&self, region: &str, az: &str) -> Option<NodeSpec> {
        let db = self.database.as_ref()?;
        let ri = self.regions.iter().position(|r| r.name == region)?;
        let ai = self.regions[ri].azs.iter().position(|a| a == az)?;
        let ip = self.network.addr((ri + 1) as u8, 60 + ai as u8);
        Some(NodeSpec {
            name: crate::database::db_node_name(az),
            role: Role::Db,
            region: Some(region.to_owned()),
            az: Some(az.to_owned()),
            address: SocketAddr::new(ip.into(), db.port),
            admin: SocketAddr::new(ip.into(), self.network.admin_port),
        })
    }

    /// The writer endpoint a database node serves (its PostgreSQL port + 2): a relay to
    /// whichever node is primary now, as RDS's cluster endpoint.
    pub fn db_writer_endpoint(&self, spec: &NodeSpec) -> SocketAddr {
        let port = self.database.as_ref().map(|d| d.port).unwrap_or(5432);
        SocketAddr::new(spec.address.ip(), port.wrapping_add(2))
    }

    /// The cache node of `az` in `region`: `127.x.<region>.70+<AZ index>`, Redis on the
    /// cache port, its keeper's admin on the admin port. A cache is used from inside its
    /// region, so it is never behind the WAN.
    pub fn cache_node(&self, region: &str, az: &str) -> Option<NodeSpec> {
        let cache = self.cache.as_ref()?;
        cache.cluster(region)?;
        let ri = self.regions.iter().position(|r| r.name == region)?;
        let ai = self.regions[ri].azs.iter().position(|a| a == az)?;
        let ip = self.network.addr((ri + 1) as u8, 70 + ai as u8);
        Some(NodeSpec {
            name: crate::cache_tier::cache_node_name(az),
            role: Role::Cache,
            region: Some(region.to_owned()),
            az: Some(az.to_owned()),
            address: SocketAddr::new(ip.into(), cache.port),
            admin: SocketAddr::new(ip.into(), self.network.admin_port),
        })
    }

    /// A region's primary endpoint (`127.x.<region>.79`, the cache port), as ElastiCache's:
    /// one address that always leads to the cluster's current primary. Every keeper of the
    /// cluster serves it (the kernel spreads connections over them), so it outlives any one
    /// node.
    pub fn cache_endpoint(&self, region: &str) -> Option<SocketAddr> {
        let cache = self.cache.as_ref()?;
        cache.cluster(region)?;
        let ri = self.regions.iter().position(|r| r.name == region)?;
        Some(SocketAddr::new(
            self.network.addr((ri + 1) as u8, 79).into(),
            cache.port,
        ))
    }

    /// Where the console serves its page, API and own metrics.
    pub fn console_address(&self) -> SocketAddr {
        match self.on_host("console") {
            Some(Some(n)) => n.address,
            _ => self.loopback_console_address(),
        }
    }

    fn loopback_console_address(&self) -> SocketAddr {
        SocketAddr::new(self.network.addr(0, 3).into(), self.network.admin_port)
    }

    /// Where node `node` is reached over TLS, when it serves TLS: a balancer's TLS
    /// listener, a PoP's HTTPS. Where it binds is the placement's (`Placement::listen`).
    pub fn tls_address(&self, node: &NodeSpec) -> Option<SocketAddr> {
        let port = match node.role {
            Role::Lb => self.lb_tls_port(),
            Role::Edge => self.network.https_port,
            _ => return None,
        };
        Some(SocketAddr::new(node.address.ip(), port))
    }

    /// Where a region's load balancer is reached.
    pub fn lb_address(&self, region: &str) -> Option<SocketAddr> {
        if let Some(placed) = self.on_host(&format!("lb-{region}")) {
            return placed.map(|n| n.address);
        }
        let i = self.regions.iter().position(|r| r.name == region)?;
        Some(SocketAddr::new(
            self.network.addr((i + 1) as u8, 1).into(),
            self.network.lb_port,
        ))
    }

    /// Where a region's load balancer serves its own /health.
    pub fn lb_admin(&self, region: &str) -> Option<SocketAddr> {
        if let Some(placed) = self.on_host(&format!("lb-{region}")) {
            return placed.map(|n| n.admin);
        }
        let i = self.regions.iter().position(|r| r.name == region)?;
        Some(SocketAddr::new(
            self.network.addr((i + 1) as u8, 1).into(),
            self.network.admin_port,
        ))
    }

    /// Where an edge PoP listens (its viewer address and its admin address).
    pub fn pop_addresses(&self, pop: &str) -> Option<(SocketAddr, SocketAddr)> {
        match self.on_host(&format!("edge-{pop}")) {
            Some(placed) => placed.map(|n| (n.address, n.admin)),
            None => self.loopback_pop_addresses(pop),
        }
    }

    fn loopback_pop_addresses(&self, pop: &str) -> Option<(SocketAddr, SocketAddr)> {
        let i = self.edges.iter().position(|p| p.name == pop)?;
        let ip = self.network.addr(100 + i as u8, 1);
        Some((
            SocketAddr::new(ip.into(), self.network.lb_port),
            SocketAddr::new(ip.into(), self.network.admin_port),
        ))
    }

    /// The PoP an edge node serves.
    pub fn pop_of(&self, node: &NodeSpec) -> Option<&crate::edge::Pop> {
        let name = node.name.strip_prefix("edge-")?;
        self.edges.iter().find(|p| p.name == name)
    }

    /// The loopback network simulated clients of a location send from, so DNS can tell
    /// them apart by source address.
    pub fn client_source(&self, location: &str) -> Option<crate::network::Cidr> {
        let i = self
            .client_locations
            .iter()
            .position(|c| c.name == location)?;
        Some(crate::network::Cidr {
            addr: self.network.addr(200 + i as u8, 0).into(),
            prefix: 24,
        })
    }

    /// The address the supervisor of `meridian up` serves its own metrics on.
    pub fn supervisor_admin(&self) -> SocketAddr {
        SocketAddr::new(self.network.addr(0, 1).into(), self.network.admin_port)
    }

    pub fn node(&self, name: &str) -> Option<NodeSpec> {
        self.nodes().into_iter().find(|n| n.name == name)
    }

    /// The service instances behind one region's load balancer.
    pub fn targets_of(&self, region: &str) -> Vec<NodeSpec> {
        self.nodes()
            .into_iter()
            .filter(|n| n.role == Role::Service && n.region.as_deref() == Some(region))
            .collect()
    }
}

/// The balancer's TLS listener, beside its plain one.
impl Config {
    /// The port a balancer serves TLS on.
    pub fn lb_tls_port(&self) -> u16 {
        self.load_balancer.tls_port.unwrap_or(
            self.network
                .lb_port
                .wrapping_add(crate::load_balancer::LB_TLS_PORT_OFFSET),
        )
    }

    /// Where a region's balancer is reached over TLS.
    pub fn lb_tls_address(&self, region: &str) -> Option<SocketAddr> {
        let plain = self.lb_address(region)?;
        Some(SocketAddr::new(plain.ip(), self.lb_tls_port()))
    }

    /// The DNS name in a balancer's certificate, which the edge asks for and verifies:
    /// wherever it listens.
    pub fn lb_server_name(&self, region: &str) -> String {
        format!("lb-{region}.{}", self.deployment.zone)
    }
}
