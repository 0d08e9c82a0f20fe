//! Static geography of the demo city: Kaohsiung's districts (approximate
//! centroids and extents), a few real road names per district, and simplified
//! river courses. Coordinates are plausible, not surveyed: good enough for a
//! map that looks right and for rain cells to hit the right places.

use crate::geo::LonLat;

/// A district of the demo city.
#[derive(Debug)]
pub struct District {
    pub en: &'static str,
    pub zh: &'static str,
    pub center: LonLat,
    /// Scatter radius for sensor placement, km.
    pub radius_km: f64,
    /// Relative share of urban infrastructure (roughly population).
    pub weight: f64,
    /// Heavy industry nearby (petrochemical, steel): dirtier air.
    pub industrial: bool,
    /// (English, Chinese) road names used in sensor names.
    pub roads: &'static [(&'static str, &'static str)],
}

#[allow(clippy::too_many_arguments)] // a table-row constructor: positional reads best
const fn d(
    en: &'static str,
    zh: &'static str,
    lon: f64,
    lat: f64,
    radius_km: f64,
    weight: f64,
    industrial: bool,
    roads: &'static [(&'static str, &'static str)],
) -> District {
    District { en, zh, center: LonLat::new(lon, lat), radius_km, weight, industrial, roads }
}

#[rustfmt::skip]
pub static DISTRICTS: &[District] = &[
    d("Sanmin", "三民區", 120.3170, 22.6470, 1.4, 3.4, false, &[
        ("Jiuru 1st Rd", "九如一路"), ("Jiangong Rd", "建工路"), ("Minzu 1st Rd", "民族一路"), ("Dashun 2nd Rd", "大順二路"),
        ("Shiquan 1st Rd", "十全一路"), ("Juemin Rd", "覺民路"),
    ]),
    d("Lingya", "苓雅區", 120.3180, 22.6230, 1.0, 1.7, false, &[
        ("Siwei 3rd Rd", "四維三路"), ("Zhongzheng 1st Rd", "中正一路"), ("Guanghua 1st Rd", "光華一路"),
        ("Qingnian 1st Rd", "青年一路"), ("Sanduo 1st Rd", "三多一路"), ("Chenggong 1st Rd", "成功一路"),
    ]),
    d("Qianzhen", "前鎮區", 120.3150, 22.5960, 1.2, 1.9, true, &[
        ("Zhongshan 3rd Rd", "中山三路"), ("Yixin 1st Rd", "一心一路"), ("Kaixuan 4th Rd", "凱旋四路"),
        ("Cuiheng N Rd", "翠亨北路"), ("Ruilong Rd", "瑞隆路"), ("Fuxing 4th Rd", "復興四路"),
    ]),
    d("Zuoying", "左營區", 120.2950, 22.6800, 1.4, 2.0, false, &[
        ("Bo'ai 2nd Rd", "博愛二路"), ("Ziyou 2nd Rd", "自由二路"), ("Huaxia Rd", "華夏路"), ("Cuihua Rd", "翠華路"),
        ("Zengzi Rd", "曾子路"), ("Mingcheng 2nd Rd", "明誠二路"),
    ]),
    d("Gushan", "鼓山區", 120.2780, 22.6450, 1.0, 1.4, false, &[
        ("Meishuguan Rd", "美術館路"), ("Minghua Rd", "明華路"), ("Jiuru 4th Rd", "九如四路"), ("Linhai 2nd Rd", "臨海二路"),
        ("Zhonghua 1st Rd", "中華一路"), ("Longde Rd", "龍德路"),
    ]),
    d("Xiaogang", "小港區", 120.3500, 22.5650, 1.8, 1.5, true, &[
        ("Yanhai 1st Rd", "沿海一路"), ("Hongping Rd", "宏平路"), ("Hanmin Rd", "漢民路"), ("Daye N Rd", "大業北路"),
        ("Shanming Rd", "山明路"), ("Zhongshan 4th Rd", "中山四路"),
    ]),
    d("Fengshan", "鳳山區", 120.3580, 22.6270, 1.8, 3.5, false, &[
        ("Guangfu Rd", "光復路"), ("Zhongshan W Rd", "中山西路"), ("Wujia 1st Rd", "五甲一路"), ("Qingnian Rd", "青年路"),
        ("Jianguo Rd", "建國路"), ("Wenhua Rd", "文化路"),
    ]),
    d("Nanzi", "楠梓區", 120.3100, 22.7250, 1.8, 1.9, true, &[
        ("Nanzi New Rd", "楠梓新路"), ("Demin Rd", "德民路"), ("Lantian Rd", "藍田路"), ("Jiachang Rd", "加昌路"),
        ("Tuku 1st Rd", "土庫一路"), ("Houchang Rd", "後昌路"),
    ]),
    d("Gangshan", "岡山區", 120.2950, 22.7950, 1.8, 1.0, false, &[
        ("Gangshan Rd", "岡山路"), ("Jieshou Rd", "介壽路"), ("Daren Rd", "大仁路"), ("Shoutian Rd", "壽天路"),
        ("Zhongshan N Rd", "中山北路"), ("Liuqiao E Rd", "柳橋東路"),
    ]),
    d("Renwu", "仁武區", 120.3500, 22.7000, 1.6, 0.9, true, &[
        ("Renxiong Rd", "仁雄路"), ("Fengren Rd", "鳳仁路"), ("Zhongzheng Rd", "中正路"), ("Renlin Rd", "仁林路"),
        ("Bagua Rd", "八卦路"), ("Chengguan Rd", "澄觀路"),
    ]),
    d("Niaosong", "鳥松區", 120.3650, 22.6600, 1.0, 0.4, false, &[
        ("Dapi Rd", "大埤路"), ("Benguan Rd", "本館路"), ("Chengqing Rd", "澄清路"), ("Shennong Rd", "神農路"),
    ]),
    d("Daliao", "大寮區", 120.3950, 22.6000, 1.8, 1.1, true, &[
        ("Fenglin 3rd Rd", "鳳林三路"), ("Guangming Rd", "光明路"), ("Jiexi Rd", "捷西路"), ("Fengping 1st Rd", "鳳屏一路"),
        ("Daliao Rd", "大寮路"),
    ]),
    d("Xinxing", "新興區", 120.3050, 22.6310, 0.6, 0.5, false, &[
        ("Zhongzheng 3rd Rd", "中正三路"), ("Qixian 1st Rd", "七賢一路"), ("Minsheng 1st Rd", "民生一路"),
        ("Zhongshan 1st Rd", "中山一路"), ("Linsen 1st Rd", "林森一路"),
    ]),
    d("Qianjin", "前金區", 120.2950, 22.6270, 0.5, 0.25, false, &[
        ("Zhongzheng 4th Rd", "中正四路"), ("Chenggong 1st Rd", "成功一路"), ("Ziqiang 2nd Rd", "自強二路"),
        ("Qixian 2nd Rd", "七賢二路"),
    ]),
    d("Yancheng", "鹽埕區", 120.2850, 22.6240, 0.5, 0.23, false, &[
        ("Dayong Rd", "大勇路"), ("Wufu 4th Rd", "五福四路"), ("Qixian 3rd Rd", "七賢三路"), ("Dayi St", "大義街"),
    ]),
    d("Qijin", "旗津區", 120.2720, 22.5930, 0.5, 0.28, false, &[
        ("Qijin 3rd Rd", "旗津三路"), ("Zhongzhou 3rd Rd", "中洲三路"), ("Miaoqian Rd", "廟前路"),
    ]),
    d("Dashe", "大社區", 120.3480, 22.7300, 1.0, 0.35, true, &[
        ("Zhongshan Rd", "中山路"), ("Sanmin Rd", "三民路"), ("Cuiping Rd", "翠屏路"),
    ]),
    d("Linyuan", "林園區", 120.3950, 22.5050, 1.6, 0.7, true, &[
        ("Linyuan N Rd", "林園北路"), ("Donglin W Rd", "東林西路"), ("Yanhai Rd", "沿海路"),
    ]),
];

/// A river course, vertices from the mouth upstream.
#[derive(Debug)]
pub struct River {
    pub en: &'static str,
    pub zh: &'static str,
    pub course: &'static [LonLat],
    /// Gauging stations: (bridge en, bridge zh, km upstream of the mouth).
    pub stations: &'static [(&'static str, &'static str, f64)],
    /// Tidal range at the mouth, m (the lower Love River is tidal).
    pub tide_amp_m: f64,
}

const fn p(lon: f64, lat: f64) -> LonLat {
    LonLat::new(lon, lat)
}

#[rustfmt::skip]
pub static RIVERS: &[River] = &[
    River {
        en: "Love River",
        zh: "愛河",
        course: &[
            p(120.2835, 22.6185), p(120.2880, 22.6270), p(120.2915, 22.6380), p(120.2960, 22.6470),
            p(120.3000, 22.6570), p(120.3050, 22.6660), p(120.3130, 22.6750), p(120.3240, 22.6870),
            p(120.3350, 22.7000),
        ],
        stations: &[
            ("Zhongzheng Bridge", "中正橋", 1.2),
            ("Jianguo Bridge", "建國橋", 2.4),
            ("Jiuru Bridge", "九如橋", 3.6),
            ("Minzu Bridge", "民族橋", 6.3),
            ("Dingli Bridge", "鼎力橋", 8.8),
        ],
        tide_amp_m: 0.45,
    },
    River {
        en: "Qianzhen River",
        zh: "前鎮河",
        course: &[
            p(120.3060, 22.5935), p(120.3200, 22.5900), p(120.3350, 22.5850), p(120.3500, 22.5900),
            p(120.3620, 22.6000), p(120.3700, 22.6100),
        ],
        stations: &[
            ("Kaixuan Bridge", "凱旋橋", 1.0),
            ("Zhongshan Bridge", "中山橋", 3.0),
            ("Hongping Bridge", "宏平橋", 5.5),
        ],
        tide_amp_m: 0.35,
    },
    River {
        en: "Fengshan River",
        zh: "鳳山溪",
        course: &[
            p(120.3300, 22.5880), p(120.3400, 22.6000), p(120.3500, 22.6150), p(120.3580, 22.6300),
            p(120.3650, 22.6450),
        ],
        stations: &[
            ("Guotai Bridge", "國泰橋", 1.5),
            ("Wujia Bridge", "五甲橋", 3.2),
            ("Zhongshan W Rd Bridge", "中山西路橋", 5.0),
        ],
        tide_amp_m: 0.2,
    },
    River {
        en: "Houjin River",
        zh: "後勁溪",
        course: &[
            p(120.2600, 22.7380), p(120.2850, 22.7300), p(120.3050, 22.7250), p(120.3250, 22.7150),
            p(120.3450, 22.7050),
        ],
        stations: &[
            ("Nanzi Bridge", "楠梓橋", 5.0),
            ("Renwu Bridge", "仁武橋", 8.0)
        ],
        tide_amp_m: 0.1,
    },
    River {
        en: "Dianbao River",
        zh: "典寶溪",
        course: &[
            p(120.2520, 22.7680), p(120.2800, 22.7700), p(120.3050, 22.7750), p(120.3300, 22.7850),
        ],
        stations: &[
            ("Dianbao Bridge", "典寶橋", 4.0)
        ],
        tide_amp_m: 0.1,
    },
    River {
        en: "Agongdian River",
        zh: "阿公店溪",
        course: &[
            p(120.2400, 22.7900), p(120.2700, 22.7950), p(120.2950, 22.8000), p(120.3200, 22.8100),
            p(120.3450, 22.8200),
        ],
        stations: &[
            ("Gangshan Bridge", "岡山橋", 5.5)
        ],
        tide_amp_m: 0.1,
    },
];

/// The district whose centre is nearest to `at`.
pub fn nearest_district(at: LonLat) -> &'static District {
    DISTRICTS
        .iter()
        .min_by(|a, b| at.distance_km(a.center).total_cmp(&at.distance_km(b.center)))
        .expect("districts exist")
}

/// Looks a river up by English name.
pub fn river(en: &str) -> Option<&'static River> {
    RIVERS.iter().find(|r| r.en == en)
}
