//! Taiwan geocodes for CAP `<area><geocode>`: the town (鄉鎮市區) codes
//! Taiwan's national alert platform (NCDR, 國家災害防救科技中心) puts in every
//! CAP message it relays, under the value name `Taiwan_Geocode_103`.
//!
//! The codes are the Ministry of the Interior's 7-digit town codes: for a
//! special municipality, the city's two digits, the district's three, then
//! `00` (高雄市三民區 = `6400500`); for a county, its five digits then the
//! town's two (花蓮縣鳳林鎮 = `1001502`). Receivers (city apps, LINE and SMS
//! gateways) match on the code, not on `areaDesc`, so a wrong code sends a
//! warning to the wrong people: the table is copied, never derived.
//!
//! Source: the Kaohsiung town table of the MOEA commerce registry's public
//! search form (the `cityCode2` district list of gcis.nat.gov.tw, found in a
//! public GitHub copy), cross-checked against codes quoted from NCDR CAP feeds
//! (新北市平溪區 6502400, 桃園市桃園區 6800100, 花蓮縣鳳林鎮 1001502, 高雄市桃源區
//! 6403700), which follow the same scheme. The NCDR platform publishes the
//! boundaries of these codes as `town_103.shp`. Kaohsiung's district codes
//! have not changed since the 2010 merger, so the 103 (2014) profile and the
//! newer 113 profile agree for every row here.
//!
//! The table covers every district of Kaohsiung (the demo city's registry
//! uses 18 of them). English names are the ones the registry uses (Hanyu
//! Pinyin, as Kaohsiung City signs them).

/// The CAP `valueName` of the codes below.
pub const VALUE_NAME: &str = "Taiwan_Geocode_103";

/// One town (district) and its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Town {
    /// The registry's English name, without "District".
    pub en: &'static str,
    /// The Chinese name with its suffix (`三民區`).
    pub zh: &'static str,
    pub city_en: &'static str,
    pub city_zh: &'static str,
    /// The 7-digit `Taiwan_Geocode_103` town code.
    pub code: &'static str,
}

impl Town {
    /// `Sanmin District, Kaohsiung City`.
    pub fn full_en(&self) -> String {
        format!("{} District, {} City", self.en, self.city_en)
    }

    /// `高雄市三民區`.
    pub fn full_zh(&self) -> String {
        format!("{}{}", self.city_zh, self.zh)
    }
}

const fn kh(en: &'static str, zh: &'static str, code: &'static str) -> Town {
    Town { en, zh, city_en: "Kaohsiung", city_zh: "高雄市", code }
}

/// Every district of Kaohsiung City (高雄市, city code 64000).
pub static TOWNS: &[Town] = &[
    kh("Yancheng", "鹽埕區", "6400100"),
    kh("Gushan", "鼓山區", "6400200"),
    kh("Zuoying", "左營區", "6400300"),
    kh("Nanzi", "楠梓區", "6400400"),
    kh("Sanmin", "三民區", "6400500"),
    kh("Xinxing", "新興區", "6400600"),
    kh("Qianjin", "前金區", "6400700"),
    kh("Lingya", "苓雅區", "6400800"),
    kh("Qianzhen", "前鎮區", "6400900"),
    kh("Qijin", "旗津區", "6401000"),
    kh("Xiaogang", "小港區", "6401100"),
    kh("Fengshan", "鳳山區", "6401200"),
    kh("Linyuan", "林園區", "6401300"),
    kh("Daliao", "大寮區", "6401400"),
    kh("Dashu", "大樹區", "6401500"),
    kh("Dashe", "大社區", "6401600"),
    kh("Renwu", "仁武區", "6401700"),
    kh("Niaosong", "鳥松區", "6401800"),
    kh("Gangshan", "岡山區", "6401900"),
    kh("Qiaotou", "橋頭區", "6402000"),
    kh("Yanchao", "燕巢區", "6402100"),
    kh("Tianliao", "田寮區", "6402200"),
    kh("Alian", "阿蓮區", "6402300"),
    kh("Luzhu", "路竹區", "6402400"),
    kh("Hunei", "湖內區", "6402500"),
    kh("Qieding", "茄萣區", "6402600"),
    kh("Yong'an", "永安區", "6402700"),
    kh("Mituo", "彌陀區", "6402800"),
    kh("Ziguan", "梓官區", "6402900"),
    kh("Qishan", "旗山區", "6403000"),
    kh("Meinong", "美濃區", "6403100"),
    kh("Liugui", "六龜區", "6403200"),
    kh("Jiaxian", "甲仙區", "6403300"),
    kh("Shanlin", "杉林區", "6403400"),
    kh("Neimen", "內門區", "6403500"),
    kh("Maolin", "茂林區", "6403600"),
    kh("Taoyuan", "桃源區", "6403700"),
    kh("Namaxia", "那瑪夏區", "6403800"),
];

/// The town a registry district names: the English name (any case, with or
/// without " District"), the Chinese name (with or without the city), or the
/// code itself. `None` for a district outside the table: the CAP area then
/// carries no geocode rather than a guessed one.
pub fn town(district: &str) -> Option<&'static Town> {
    let wanted = district.trim();
    let en = wanted.strip_suffix(" District").or_else(|| wanted.strip_suffix(" district")).unwrap_or(wanted);
    TOWNS.iter().find(|t| t.en.eq_ignore_ascii_case(en) || t.zh == wanted || t.full_zh() == wanted || t.code == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_well_formed_and_in_order() {
        let mut seen = std::collections::HashSet::new();
        for (i, t) in TOWNS.iter().enumerate() {
            assert_eq!(t.code.len(), 7, "{}", t.en);
            assert!(t.code.bytes().all(|b| b.is_ascii_digit()), "{}", t.en);
            // Municipal district codes run 001, 002... in the ministry's order.
            assert_eq!(t.code, format!("64{:03}00", i + 1), "{}", t.en);
            assert!(seen.insert(t.code));
        }
    }

    #[test]
    fn finds_a_town_by_any_of_its_names() {
        for name in ["Sanmin", "sanmin", "Sanmin District", "三民區", "高雄市三民區", "6400500"] {
            assert_eq!(town(name).map(|t| t.code), Some("6400500"), "{name}");
        }
        assert_eq!(town("Atlantis"), None);
    }

    #[test]
    fn every_demo_city_district_has_a_code() {
        // The districts citygauge-sim's registry places sensors in.
        for d in [
            "Sanmin", "Lingya", "Qianzhen", "Zuoying", "Gushan", "Xiaogang", "Fengshan", "Nanzi", "Gangshan", "Renwu",
            "Niaosong", "Daliao", "Xinxing", "Qianjin", "Yancheng", "Qijin", "Dashe", "Linyuan",
        ] {
            assert!(town(d).is_some(), "{d}");
        }
    }
}
